using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;
using DreamBooth.Engine.Sources;

namespace DreamBooth.Engine.Tests.Sources;

public sealed class LdmCheckpointTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("db-ldm-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch { } }

    static readonly (string Component, string Weights)[] s_weights =
    {
        ("unet", "diffusion_pytorch_model.safetensors"),
        ("vae", "diffusion_pytorch_model.safetensors"),
        ("text_encoder", "model.safetensors"),
    };

    static void AssertBitIdentical(string expectedFolder, string actualFolder)
    {
        foreach (var (component, weights) in s_weights)
        {
            using var scope = torch.NewDisposeScope();
            using var a = SafetensorsFile.Open(Path.Combine(expectedFolder, component, weights));
            using var b = SafetensorsFile.Open(Path.Combine(actualFolder, component, weights));
            Assert.Equal(a.Keys.OrderBy(k => k, StringComparer.Ordinal), b.Keys.OrderBy(k => k, StringComparer.Ordinal));
            foreach (var e in a.Entries)
            {
                var x = a.Read(e.Name); var y = b.Read(e.Name);
                Assert.Equal(x.dtype, y.dtype);
                Assert.Equal(x.shape, y.shape);
                Assert.True(x.bytes.SequenceEqual(y.bytes), $"{component}/{e.Name} differs");
            }
        }
    }

    static JsonObject Config(string folder, string component, string file = "config.json")
        => ConfigJson.Load(Path.Combine(folder, component, file)).Root;

    [Fact]
    public void Tiny_pipeline_exports_and_imports_back_bit_identical()
    {
        var file = Path.Combine(_dir, "tiny.safetensors");
        var export = LdmCheckpoint.Export(Fixtures.TinySd, file);
        Assert.Equal(304 + 156 + 84, export.TensorCount); // tiny-sd's unet, vae, text encoder
        Assert.StartsWith("SD 1.x", export.Layout);
        using (var f = SafetensorsFile.Open(file))
        {
            Assert.True(f.Contains("model.diffusion_model.input_blocks.0.0.weight"));
            Assert.True(f.Contains("cond_stage_model.transformer.text_model.encoder.layers.4.mlp.fc1.weight"));
            Assert.Equal(new long[] { 64, 64, 1, 1 }, f["first_stage_model.encoder.mid.attn_1.q.weight"].Shape);
            Assert.Equal(new long[] { 64, 64, 3, 3 }, f["model.diffusion_model.output_blocks.2.1.conv.weight"].Shape);
            Assert.All(f.Keys, k => Assert.Matches("^(model\\.diffusion_model|first_stage_model|cond_stage_model\\.transformer)\\.", k));
        }
        Assert.True(LdmCheckpoint.IsLdmCheckpoint(file));

        var dest = Path.Combine(_dir, "imported");
        var report = LdmCheckpoint.Import(file, dest, new ImportOptions { TokenizerFolder = Path.Combine(Fixtures.TinySd, "tokenizer") });
        Assert.Equal(export.TensorCount, report.TensorCount);
        Assert.Empty(report.IgnoredKeys);
        AssertBitIdentical(Fixtures.TinySd, dest);
        // With the configs embedded by the exporter, every original key/value comes back.
        foreach (var c in new[] { "unet", "vae", "text_encoder" })
            foreach (var (k, v) in Config(Fixtures.TinySd, c))
                Assert.True(JsonNode.DeepEquals(v, Config(dest, c)[k]), $"{c}.{k}: {v?.ToJsonString()} vs {Config(dest, c)[k]?.ToJsonString()}");
        Assert.True(File.Exists(Path.Combine(dest, "tokenizer", "vocab.json")));
        Assert.True(File.Exists(Path.Combine(dest, "model_index.json")));
        Assert.Equal(0.012, Config(dest, "scheduler", "scheduler_config.json")["beta_end"]!.GetValue<double>());
    }

    [Fact]
    public void Configs_are_inferred_from_shapes_without_embedded_metadata()
    {
        var file = Path.Combine(_dir, "plain.safetensors");
        LdmCheckpoint.Export(Fixtures.TinySd, file, new ExportOptions { EmbedConfigs = false });
        var dest = Path.Combine(_dir, "inferred");
        // Head counts and the image size are not in the weights: the tiny model's are given.
        var report = LdmCheckpoint.Import(file, dest, new ImportOptions { TextEncoderHeads = 4, ImageSize = 64 });
        AssertBitIdentical(Fixtures.TinySd, dest);

        var unetKeys = new[] { "in_channels", "out_channels", "block_out_channels", "layers_per_block", "down_block_types", "up_block_types",
            "mid_block_type", "cross_attention_dim", "use_linear_projection", "transformer_layers_per_block", "attention_head_dim", "sample_size",
            "norm_num_groups", "norm_eps", "flip_sin_to_cos", "freq_shift", "act_fn", "downsample_padding", "upcast_attention" };
        var vaeKeys = new[] { "in_channels", "out_channels", "block_out_channels", "layers_per_block", "latent_channels", "down_block_types",
            "up_block_types", "norm_num_groups", "sample_size", "scaling_factor", "mid_block_add_attention", "use_quant_conv", "use_post_quant_conv" };
        var textKeys = new[] { "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
            "max_position_embeddings", "hidden_act", "layer_norm_eps" };
        foreach (var (c, keys) in new[] { ("unet", unetKeys), ("vae", vaeKeys), ("text_encoder", textKeys) })
            foreach (var k in keys)
            {
                var expected = Config(Fixtures.TinySd, c)[k]; var actual = Config(dest, c)[k];
                Assert.True(JsonNode.DeepEquals(expected, actual) || expected?.ToJsonString() == actual?.ToJsonString()
                            || (expected is JsonValue ev && actual is JsonValue av && ev.GetValue<double>() == av.GetValue<double>()),
                    $"{c}.{k}: expected {expected?.ToJsonString()}, inferred {actual?.ToJsonString()}");
            }
        Assert.Contains(report.Inferred, l => l.Contains("cross_attention_dim 32"));
        Assert.Contains(report.Warnings, w => w.Contains("-TokenizerFolder") && w.Contains("clip-vit-large-patch14"));
        Assert.Equal("epsilon", Config(dest, "scheduler", "scheduler_config.json")["prediction_type"]!.GetValue<string>());
    }

    [Fact]
    public void Text_encoder_heads_that_shapes_cannot_tell_give_a_clear_error()
    {
        var file = Path.Combine(_dir, "plain.safetensors");
        LdmCheckpoint.Export(Fixtures.TinySd, file, new ExportOptions { EmbedConfigs = false });
        var e = Assert.Throws<ModelSourceException>(() => LdmCheckpoint.Import(file, Path.Combine(_dir, "x")));
        Assert.Contains("TextEncoderHeads", e.Message);
    }

    [Fact]
    public void Sd2_openclip_layout_round_trips_bit_identical()
    {
        var file = Path.Combine(_dir, "sd2.safetensors");
        var export = LdmCheckpoint.Export(Fixtures.TinySd, file, new ExportOptions { OpenClipTextEncoder = true });
        Assert.StartsWith("SD 2.x", export.Layout);
        using (var f = SafetensorsFile.Open(file))
        {
            Assert.Equal(new long[] { 96, 32 }, f["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"].Shape);
            Assert.Equal(new long[] { 96 }, f["cond_stage_model.model.transformer.resblocks.4.attn.in_proj_bias"].Shape);
            Assert.Equal(new long[] { 77, 32 }, f["cond_stage_model.model.positional_embedding"].Shape);
            Assert.True(f.Contains("cond_stage_model.model.ln_final.weight"));
            Assert.DoesNotContain(f.Keys, k => k.StartsWith("cond_stage_model.transformer.", StringComparison.Ordinal));
        }
        var dest = Path.Combine(_dir, "sd2");
        var report = LdmCheckpoint.Import(file, dest, new ImportOptions { PredictionType = "epsilon" });
        Assert.StartsWith("SD 2.x", report.Layout);
        Assert.Contains(report.Warnings, w => w.Contains("-TokenizerFolder") && w.Contains("stable-diffusion-2-1") && !w.Contains("clip-vit-large-patch14's tokenizer"));
        AssertBitIdentical(Fixtures.TinySd, dest);
        Assert.Equal(5, Config(dest, "text_encoder")["num_hidden_layers"]!.GetValue<int>());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Sd2_file_with_a_clip_tokenizer_gets_sd2_padding_only_as_a_stand_in(bool standIn)
    {
        // The tiny fixture's tokenizer pads with <|endoftext|>, as CLIP ViT-L/14's does; SD 2.x's pads with "!".
        var file = Path.Combine(_dir, "sd2-tok.safetensors");
        LdmCheckpoint.Export(Fixtures.TinySd, file, new ExportOptions { OpenClipTextEncoder = true });
        var dest = Path.Combine(_dir, standIn ? "sd2-standin" : "sd2-given");
        var report = LdmCheckpoint.Import(file, dest, new ImportOptions
        {
            PredictionType = "epsilon", TokenizerFolder = Path.Combine(Fixtures.TinySd, "tokenizer"), TokenizerIsClipStandIn = standIn,
        });
        var tok = DreamBooth.Engine.Tokenization.ClipTokenizer.FromPretrained(Path.Combine(dest, "tokenizer"));
        var original = DreamBooth.Engine.Tokenization.ClipTokenizer.FromPretrained(Path.Combine(Fixtures.TinySd, "tokenizer"));
        Assert.Equal("<|endoftext|>", original.PadToken);
        if (standIn)
        {
            Assert.Equal("!", tok.PadToken);
            Assert.Equal(original.Tokenize("a photo of sks dog"), tok.Tokenize("a photo of sks dog"));   // same vocabulary
            Assert.Contains(report.Inferred, l => l.StartsWith("tokenizer:") && l.Contains("'!'"));
            Assert.DoesNotContain(report.Warnings, w => w.Contains("pads with"));
        }
        else
        {
            Assert.Equal("<|endoftext|>", tok.PadToken);   // the user's folder is copied as it is
            Assert.Contains(report.Warnings, w => w.Contains("pads with '<|endoftext|>'") && w.Contains("'!'"));
        }
        Assert.Equal(File.ReadAllText(Path.Combine(Fixtures.TinySd, "tokenizer", "vocab.json")), File.ReadAllText(Path.Combine(dest, "tokenizer", "vocab.json")));
    }

    [Fact]
    public void Sd2_file_as_model_takes_the_cached_clip_tokenizer_with_sd2_padding()
    {
        var file = Path.Combine(_dir, "sd2-model.safetensors");
        LdmCheckpoint.Export(Fixtures.TinySd, file, new ExportOptions { OpenClipTextEncoder = true });
        // A Hugging Face cache that holds only openai/clip-vit-large-patch14's tokenizer (the tiny fixture's stands in).
        var hub = Path.Combine(_dir, "hf");
        var repo = Path.Combine(hub, "models--openai--clip-vit-large-patch14");
        var commit = new string('c', 40);
        var snapshot = Directory.CreateDirectory(Path.Combine(repo, "snapshots", commit)).FullName;
        foreach (var f in Directory.GetFiles(Path.Combine(Fixtures.TinySd, "tokenizer"))) File.Copy(f, Path.Combine(snapshot, Path.GetFileName(f)));
        Directory.CreateDirectory(Path.Combine(repo, "refs"));
        File.WriteAllText(Path.Combine(repo, "refs", "main"), commit);
        var saved = (Cache: Environment.GetEnvironmentVariable("DREAMBOOTH_CACHE"), Tokenizer: Environment.GetEnvironmentVariable("DREAMBOOTH_TOKENIZER"));
        try
        {
            Environment.SetEnvironmentVariable("DREAMBOOTH_CACHE", Path.Combine(_dir, "single-file-cache"));
            Environment.SetEnvironmentVariable("DREAMBOOTH_TOKENIZER", null);
            var source = DreamBooth.Engine.Pipelines.ModelSource.Resolve(file, new HubOptions { CacheDir = hub, Offline = true });
            var tok = DreamBooth.Engine.Tokenization.ClipTokenizer.FromPretrained(Path.Combine(source.Path, "tokenizer"));
            Assert.Equal("!", tok.PadToken);
            Assert.Equal(0, tok.PadTokenId);   // "!" is the vocabulary's first token, as in SD 2.x's tokenizer
            Assert.Equal("<|endoftext|>", DreamBooth.Engine.Tokenization.ClipTokenizer.FromPretrained(snapshot).PadToken);   // the cache is untouched
        }
        finally
        {
            Environment.SetEnvironmentVariable("DREAMBOOTH_CACHE", saved.Cache);
            Environment.SetEnvironmentVariable("DREAMBOOTH_TOKENIZER", saved.Tokenizer);
        }
    }

    [Fact]
    public void Sd1_file_keeps_the_clip_tokenizer_as_it_is()
    {
        var file = Path.Combine(_dir, "sd1-tok.safetensors");
        LdmCheckpoint.Export(Fixtures.TinySd, file);
        var dest = Path.Combine(_dir, "sd1-standin");
        var report = LdmCheckpoint.Import(file, dest, new ImportOptions { TokenizerFolder = Path.Combine(Fixtures.TinySd, "tokenizer"), TokenizerIsClipStandIn = true });
        Assert.Equal("<|endoftext|>", DreamBooth.Engine.Tokenization.ClipTokenizer.FromPretrained(Path.Combine(dest, "tokenizer")).PadToken);
        Assert.DoesNotContain(report.Inferred, l => l.StartsWith("tokenizer:"));
        Assert.DoesNotContain(report.Warnings, w => w.Contains("tokenizer"));
    }

    [Fact]
    public void Fp16_export_casts_every_weight()
    {
        var file = Path.Combine(_dir, "half.safetensors");
        var report = LdmCheckpoint.Export(Fixtures.TinySd, file, new ExportOptions { DType = ScalarType.Float16 });
        Assert.Equal("Float16", report.DType);
        using var f = SafetensorsFile.Open(file);
        Assert.All(f.Entries, e => Assert.Equal("F16", e.DType));
    }

    [Fact]
    public void Export_takes_checkpoint_overrides_for_unet_weights()
    {
        // A training checkpoint-N folder supplies its own unet weights: here the tiny unet scaled by 2.
        var overrideFile = Path.Combine(_dir, "checkpoint-1", "unet.safetensors");
        using (var scope = torch.NewDisposeScope())
        using (var f = SafetensorsFile.Open(Path.Combine(Fixtures.TinySd, "unet", "diffusion_pytorch_model.safetensors")))
            SafetensorsWriter.Write(overrideFile, f.ReadAll().ToDictionary(kv => kv.Key, kv => kv.Value * 2));
        var file = Path.Combine(_dir, "override.safetensors");
        LdmCheckpoint.Export(Fixtures.TinySd, file, new ExportOptions { UnetWeights = overrideFile });
        using var s = torch.NewDisposeScope();
        using var orig = SafetensorsFile.Open(Path.Combine(Fixtures.TinySd, "unet", "diffusion_pytorch_model.safetensors"));
        using var outFile = SafetensorsFile.Open(file);
        Assert.True((orig.Read("conv_in.weight") * 2).Equals(outFile.Read("model.diffusion_model.input_blocks.0.0.weight")));
    }

    [Theory]
    [InlineData("model.ckpt")]
    [InlineData("model.bin")]
    public void Pickles_are_refused_with_a_clear_message(string name)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, new byte[] { (byte)'P', (byte)'K', 3, 4 });
        var e = Assert.Throws<ModelSourceException>(() => LdmCheckpoint.Import(path, Path.Combine(_dir, "out")));
        Assert.Contains("pickle", e.Message);
        Assert.False(Directory.Exists(Path.Combine(_dir, "out")));
    }

    [Fact]
    public void A_zip_pickle_renamed_to_safetensors_is_refused()
    {
        var path = Path.Combine(_dir, "sneaky.safetensors");
        File.WriteAllBytes(path, new byte[] { (byte)'P', (byte)'K', 3, 4, 0, 0, 0, 0 });
        Assert.Throws<ModelSourceException>(() => LdmCheckpoint.Import(path, Path.Combine(_dir, "out")));
    }
}
