using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;
using DreamBooth.Engine.Sources;

namespace DreamBooth.Engine.Tests.Sources;

/// <summary>Config inference from SD 1.x / 2.x shapes (the full-size models' shapes, written by hand; no weights needed).</summary>
public sealed class LdmConfigInferenceTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("db-infer-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch { } }

    static Dictionary<string, long[]> UnetShapes(int context, bool linear)
    {
        int[] ch = { 320, 640, 1280, 1280 };
        var s = new Dictionary<string, long[]>
        {
            ["input_blocks.0.0.weight"] = new long[] { 320, 4, 3, 3 },
            ["time_embed.0.weight"] = new long[] { 1280, 320 },
            ["out.2.weight"] = new long[] { 4, 320, 3, 3 },
        };
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 2; j++)
            {
                int b = 1 + i * 3 + j;
                s[$"input_blocks.{b}.0.out_layers.3.weight"] = new long[] { ch[i], ch[i], 3, 3 };
                if (i < 3)
                {
                    s[$"input_blocks.{b}.1.proj_in.weight"] = linear ? new long[] { ch[i], ch[i] } : new long[] { ch[i], ch[i], 1, 1 };
                    s[$"input_blocks.{b}.1.transformer_blocks.0.attn2.to_k.weight"] = new long[] { ch[i], context };
                }
                if (i < 3 && j == 1) s[$"input_blocks.{b + 1}.0.op.weight"] = new long[] { ch[i], ch[i], 3, 3 };
            }
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 3; j++)
            {
                s[$"output_blocks.{i * 3 + j}.0.out_layers.3.weight"] = new long[] { 1, 1, 3, 3 };
                if (i > 0) s[$"output_blocks.{i * 3 + j}.1.proj_in.weight"] = new long[] { 1, 1 };
            }
        s["middle_block.1.proj_in.weight"] = new long[] { 1280, 1280 };
        s["middle_block.2.in_layers.0.weight"] = new long[] { 1280 };
        return s;
    }

    [Fact]
    public void Sd1_unet_config_is_inferred()
    {
        var shapes = UnetShapes(768, linear: false);
        var report = new List<string>();
        var c = LdmConfigInference.Unet(shapes, UnetLdmLayout.FromLdmKeys(shapes.Keys), new ImportOptions(), 8, report);
        Assert.Equal("[320,640,1280,1280]", c["block_out_channels"]!.ToJsonString());
        Assert.Equal("[\"CrossAttnDownBlock2D\",\"CrossAttnDownBlock2D\",\"CrossAttnDownBlock2D\",\"DownBlock2D\"]", c["down_block_types"]!.ToJsonString());
        Assert.Equal("[\"UpBlock2D\",\"CrossAttnUpBlock2D\",\"CrossAttnUpBlock2D\",\"CrossAttnUpBlock2D\"]", c["up_block_types"]!.ToJsonString());
        Assert.Equal(768, c["cross_attention_dim"]!.GetValue<int>());
        Assert.Equal(8, c["attention_head_dim"]!.GetValue<int>());
        Assert.False(c["use_linear_projection"]!.GetValue<bool>());
        Assert.Equal(64, c["sample_size"]!.GetValue<int>());
        Assert.Equal(2, c["layers_per_block"]!.GetValue<int>());
        Assert.Null(c["time_embedding_dim"]);
    }

    [Fact]
    public void Sd2_unet_config_is_inferred()
    {
        var shapes = UnetShapes(1024, linear: true);
        var report = new List<string>();
        var c = LdmConfigInference.Unet(shapes, UnetLdmLayout.FromLdmKeys(shapes.Keys), new ImportOptions(), 8, report);
        Assert.Equal(1024, c["cross_attention_dim"]!.GetValue<int>());
        Assert.Equal("[5,10,20,20]", c["attention_head_dim"]!.ToJsonString());
        Assert.True(c["use_linear_projection"]!.GetValue<bool>());
        Assert.Equal(96, c["sample_size"]!.GetValue<int>());
        Assert.Contains(report, l => l.Contains("64 channels per head"));
    }

    [Fact]
    public void Sd1_text_encoder_config_is_inferred()
    {
        var s = new Dictionary<string, long[]>
        {
            ["text_model.embeddings.token_embedding.weight"] = new long[] { 49408, 768 },
            ["text_model.embeddings.position_embedding.weight"] = new long[] { 77, 768 },
        };
        for (int i = 0; i < 12; i++) s[$"text_model.encoder.layers.{i}.mlp.fc1.weight"] = new long[] { 3072, 768 };
        var c = LdmConfigInference.Clip(s, new ImportOptions(), new List<string>());
        var sd14 = ConfigJson.Load(Path.Combine(Fixtures.Root, "configs", "sd-v1-4", "text_encoder_config.json")).Root;
        foreach (var k in new[] { "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "max_position_embeddings", "hidden_act" })
            Assert.Equal(sd14[k]!.ToJsonString(), c[k]!.ToJsonString());
    }

    [Fact]
    public void Sd2_openclip_text_encoder_config_matches_stable_diffusion_2()
    {
        var s = new Dictionary<string, long[]>
        {
            ["token_embedding.weight"] = new long[] { 49408, 1024 },
            ["positional_embedding"] = new long[] { 77, 1024 },
            ["text_projection"] = new long[] { 1024, 1024 },
        };
        for (int i = 0; i < 24; i++) s[$"transformer.resblocks.{i}.mlp.c_fc.weight"] = new long[] { 4096, 1024 };
        var c = LdmConfigInference.OpenClip(s, 23, new ImportOptions(), new List<string>());
        var sd2 = ConfigJson.Load(Path.Combine(Fixtures.Root, "configs", "sd-2", "text_encoder_config.json")).Root;
        foreach (var k in new[] { "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "max_position_embeddings", "hidden_act" })
            Assert.Equal(sd2[k]!.ToJsonString(), c[k]!.ToJsonString());
    }

    [Fact]
    public void Legacy_sd1_text_keys_and_extra_keys_import()
    {
        // Old SD 1.x files lack the text_model. level and carry position_ids and EMA/scheduler extras.
        var exported = Path.Combine(_dir, "new.safetensors");
        LdmCheckpoint.Export(Fixtures.TinySd, exported);
        var legacy = Path.Combine(_dir, "legacy.safetensors");
        using (var scope = torch.NewDisposeScope())
        {
            Dictionary<string, Tensor> all; IReadOnlyDictionary<string, string> meta;
            using (var f = SafetensorsFile.Open(exported)) { all = f.ReadAll(); meta = f.Metadata; }
            var renamed = all.ToDictionary(kv => kv.Key.Replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."), kv => kv.Value);
            renamed["cond_stage_model.transformer.embeddings.position_ids"] = torch.arange(77L).unsqueeze(0);
            renamed["alphas_cumprod"] = torch.ones(1000);
            renamed["model_ema.decay"] = torch.tensor(0.9999f);
            SafetensorsWriter.Write(legacy, renamed, meta);
        }
        var dest = Path.Combine(_dir, "out");
        var report = LdmCheckpoint.Import(legacy, dest);
        Assert.Contains("alphas_cumprod", report.IgnoredKeys);
        Assert.Contains("model_ema.decay", report.IgnoredKeys);
        Assert.Contains(report.IgnoredKeys, k => k.EndsWith("position_ids"));
        using var s2 = torch.NewDisposeScope();
        using var a = SafetensorsFile.Open(Path.Combine(Fixtures.TinySd, "text_encoder", "model.safetensors"));
        using var b = SafetensorsFile.Open(Path.Combine(dest, "text_encoder", "model.safetensors"));
        Assert.Equal(a.Keys.Order(StringComparer.Ordinal), b.Keys.Order(StringComparer.Ordinal));
        foreach (var k in a.Keys) Assert.True(a.Read(k).bytes.SequenceEqual(b.Read(k).bytes), k);
    }
}
