using DreamBooth.Engine.IO;
using DreamBooth.Engine.Lora;
using DreamBooth.Engine.Models.TextEncoders;
using DreamBooth.Engine.Models.Unets;

namespace DreamBooth.Engine.Tests.Lora;

/// <summary>LoRA files: diffusers and kohya layouts written and read back, a hand-written kohya file, legacy keys.</summary>
public sealed class LoRAWeightsTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "lora-tests-" + Guid.NewGuid().ToString("N")[..8]);
    public LoRAWeightsTests() => Directory.CreateDirectory(_dir);
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    static UNet2DConditionModel Unet() => UNet2DConditionModel.FromPretrained(Path.Combine(Fixtures.TinySd, "unet"));
    static ClipTextModel TextEncoder() => ClipTextModel.FromPretrained(Path.Combine(Fixtures.TinySd, "text_encoder"));

    static LoRANetwork Trained(nn.Module model, string component, int rank, double alpha, long seed)
    {
        var n = LoRANetwork.Create(model, component, rank, alpha, new torch.Generator((ulong)seed));
        using var _ = torch.no_grad();
        var g = new torch.Generator((ulong)seed + 100);
        foreach (var (_, _, l) in n.Layers) l.Up.copy_(torch.randn(l.Up.shape, generator: g));
        return n;
    }

    [Fact]
    public void Diffusers_RoundTrip_SameTensors()
    {
        using var unet = Unet();
        using var te = TextEncoder();
        using var u = Trained(unet, LoRATargets.Unet, 4, 8, 1);
        using var t = Trained(te, LoRATargets.TextEncoder, 4, 8, 2);
        var path = Path.Combine(_dir, LoRAWeights.FileName);
        LoRAWeights.Save(path, new[] { u, t }, LoRAFormat.Diffusers, baseModel: "/models/sd");

        using (var raw = SafetensorsFile.Open(path))
        {
            var expected = u.NamedParameters().Concat(t.NamedParameters()).ToDictionary(p => p.Name, p => p.Param);
            Assert.Equal(expected.Keys.OrderBy(k => k, StringComparer.Ordinal), raw.Keys.OrderBy(k => k, StringComparer.Ordinal));
            foreach (var (k, p) in expected) using (var r = raw.Read(k)) Assert.True(r.Equals(p), k);
            Assert.Equal("/models/sd", raw.Metadata[LoRAWeights.BaseModelMetadataKey]);
            Assert.Contains("\"unet.lora_alpha\":8", raw.Metadata[LoRAWeights.AdapterMetadataKey]);
        }
        using var loaded = LoRAWeights.Load(path);
        Assert.Equal(LoRAFormat.Diffusers, loaded.Format);
        Assert.Equal("/models/sd", loaded.BaseModel);
        foreach (var n in new[] { u, t })
            foreach (var (name, _, layer) in n.Layers)
            {
                var w = loaded.For(n.Component)[name];
                Assert.True(w.Down.Equals(layer.Down) && w.Up.Equals(layer.Up), name);
                Assert.Equal(8.0, w.Alpha);
            }
    }

    [Fact]
    public void Kohya_RoundTrip_SameEffectiveWeights()
    {
        using var unet = Unet();
        using var te = TextEncoder();
        using var u = Trained(unet, LoRATargets.Unet, 4, 2, 1);
        using var t = Trained(te, LoRATargets.TextEncoder, 4, 2, 2);
        var path = Path.Combine(_dir, LoRAWeights.KohyaFileName);
        LoRAWeights.Save(path, new[] { u, t }, LoRAFormat.Kohya);
        using (var raw = SafetensorsFile.Open(path))
        {
            Assert.True(raw.Contains("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"));
            Assert.True(raw.Contains("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.lora_up.weight"));
            Assert.True(raw.Contains("lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha"));
            Assert.Empty(raw["lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha"].Shape);
        }
        using var loaded = LoRAWeights.Load(path);
        Assert.Equal(LoRAFormat.Kohya, loaded.Format);
        using var unet2 = Unet();
        using var te2 = TextEncoder();
        using var u2 = LoRANetwork.FromWeights(unet2, LoRATargets.Unet, loaded.For(LoRATargets.Unet));
        using var t2 = LoRANetwork.FromWeights(te2, LoRATargets.TextEncoder, loaded.For(LoRATargets.TextEncoder));
        foreach (var (a, b) in new[] { (u, u2), (t, t2) })
        {
            Assert.Equal(a.Layers.Select(l => l.Name).ToHashSet(), b.Layers.Select(l => l.Name).ToHashSet());
            foreach (var (name, _, layer) in a.Layers)
            {
                var other = b.Layers.Single(l => l.Name == name).Layer;
                Assert.Equal(0.5, other.Scale);
                using var d1 = layer.DeltaWeight();
                using var d2 = other.DeltaWeight();
                Assert.True(d1.Equals(d2), name + ": effective weight differs after kohya round trip");
            }
        }
    }

    [Fact]
    public void HandWrittenKohyaFile_LoadsOntoTheRightModules()
    {
        var path = Path.Combine(_dir, "hand.safetensors");
        // to_q of the first UNet self-attention is 32→32; the CLIP layer-1 v_proj is 32→32.
        var down = torch.arange(2 * 32, dtype: torch.float32).reshape(2, 32) / 100;
        var up = torch.arange(32 * 2, dtype: torch.float32).reshape(32, 2) / 50;
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor>
        {
            ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"] = down,
            ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight"] = up,
            ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha"] = torch.tensor(1f),
            ["lora_te_text_model_encoder_layers_1_self_attn_v_proj.lora_down.weight"] = down,
            ["lora_te_text_model_encoder_layers_1_self_attn_v_proj.lora_up.weight"] = up,
            ["lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn2_to_out_0.lora_down.weight"] = torch.zeros(2, 32),
            ["lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn2_to_out_0.lora_up.weight"] = torch.zeros(32, 2),
        });
        using var unet = Unet();
        using var te = TextEncoder();
        var refUnet = unet.named_parameters().Single(p => p.name == "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight").parameter.clone();
        var refTe = te.named_parameters().Single(p => p.name == "text_model.encoder.layers.1.self_attn.v_proj.weight").parameter.clone();
        using (var set = LoRAAdapterSet.Apply(unet, te, new[] { new LoRAReference(path, 1.0) }))
        {
            var names = set.Networks.SelectMany(n => n.Layers.Select(l => n.Component + ":" + l.Name)).OrderBy(x => x, StringComparer.Ordinal).ToList();
            Assert.Equal(new[]
            {
                "text_encoder:text_model.encoder.layers.1.self_attn.v_proj",
                "unet:down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
                "unet:up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0",
            }, names);
            set.Merge();
        }
        var u = unet.named_parameters().Single(p => p.name == "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight").parameter;
        var t = te.named_parameters().Single(p => p.name == "text_model.encoder.layers.1.self_attn.v_proj.weight").parameter;
        // alpha 1, rank 2 → scale 0.5; no alpha → alpha = rank → scale 1.
        Assert.True(Fixtures.MaxAbs(u, refUnet + 0.5 * up.matmul(down)) < 1e-6, "UNet to_q got W + 0.5·up·down");
        Assert.True(Fixtures.MaxAbs(t, refTe + up.matmul(down)) < 1e-6, "CLIP v_proj got W + up·down");
    }

    [Fact]
    public void KohyaFile_WithProjConvFeedForwardAndMlp_HooksEqualMerge()
    {
        using var unet = Unet();
        using var te = TextEncoder();
        var modules = new[]
        {
            ("lora_unet_", unet, "down_blocks.0.attentions.0.proj_in"),          // 1×1 conv, kohya stores [r, in, 1, 1]
            ("lora_unet_", unet, "up_blocks.1.attentions.2.proj_out"),
            ("lora_unet_", unet, "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj"),
            ("lora_unet_", unet, "down_blocks.0.attentions.1.transformer_blocks.0.ff.net.2"),
            ("lora_te_", (nn.Module)te, "text_model.encoder.layers.2.mlp.fc1"),
        };
        var tensors = new Dictionary<string, Tensor>();
        var g = new torch.Generator(5);
        foreach (var (prefix, model, name) in modules)
        {
            var w = model.named_parameters().Single(p => p.name == name + ".weight").parameter;
            var flat = prefix + name.Replace('.', '_');
            bool conv = w.dim() == 4;
            tensors[flat + ".lora_down.weight"] = conv ? torch.randn(new[] { 3L, w.shape[1], 1, 1 }, generator: g) : torch.randn(new[] { 3L, w.shape[1] }, generator: g);
            tensors[flat + ".lora_up.weight"] = conv ? torch.randn(new[] { w.shape[0], 3L, 1, 1 }, generator: g) * 0.1 : torch.randn(new[] { w.shape[0], 3L }, generator: g) * 0.1;
            tensors[flat + ".alpha"] = torch.tensor(1.5f);
        }
        var path = Path.Combine(_dir, "kohya-full.safetensors");
        SafetensorsWriter.Write(path, tensors);

        using var sample = torch.randn(new long[] { 1, 4, 16, 16 }, generator: new torch.Generator(0));
        using var context = torch.randn(new long[] { 1, 7, 32 }, generator: new torch.Generator(1));
        using var ids = torch.tensor(new long[] { 49406, 320, 1125, 49407 }).unsqueeze(0);
        Tensor RunUnet() { using var _ = torch.no_grad(); return unet.forward(sample, torch.tensor(new long[] { 300 }), context); }
        Tensor RunTe() { using var _ = torch.no_grad(); using var o = te.Forward(ids); return o.LastHiddenState.clone(); }
        using var baseU = RunUnet();
        using var baseT = RunTe();
        using var set = LoRAAdapterSet.Apply(unet, te, new[] { new LoRAReference(path, 0.8) });
        Assert.Equal(modules.Length, set.Networks.Sum(n => n.Layers.Count));
        using var hookedU = RunUnet();
        using var hookedT = RunTe();
        Assert.True(Fixtures.RelativeError(hookedU, baseU) > 1e-4, "the adapters must change the UNet output");
        Assert.True(Fixtures.RelativeError(hookedT, baseT) > 1e-4, "the adapter must change the text encoder output");
        set.Merge();
        using var mergedU = RunUnet();
        using var mergedT = RunTe();
        double eu = Fixtures.RelativeError(mergedU, hookedU), et = Fixtures.RelativeError(mergedT, hookedT);
        Assert.True(eu < 1e-5, $"UNet merged vs hooked relative error {eu:E2}");
        Assert.True(et < 1e-5, $"text encoder merged vs hooked relative error {et:E2}");
    }

    [Fact]
    public void LoConConvAdapter_IsRefusedClearly()
    {
        var path = Path.Combine(_dir, "locon.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor>
        {
            ["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"] = torch.ones(2, 32, 3, 3),
            ["lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight"] = torch.ones(32, 2, 1, 1),
        });
        using var unet = Unet();
        using var te = TextEncoder();
        var e = Assert.Throws<InvalidDataException>(() => LoRAAdapterSet.Apply(unet, te, new[] { new LoRAReference(path) }));
        Assert.Contains("LoCon", e.Message);
    }

    [Fact]
    public void LegacyDiffusersKeys_AreRead()
    {
        var path = Path.Combine(_dir, "legacy.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor>
        {
            ["down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.down.weight"] = torch.ones(2, 32),
            ["down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.up.weight"] = torch.ones(32, 2),
            ["text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora_linear_layer.down.weight"] = torch.ones(2, 32),
            ["text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora_linear_layer.up.weight"] = torch.ones(32, 2),
            ["unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_v.lora.down.weight"] = torch.ones(2, 32),
            ["unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_v.lora.up.weight"] = torch.ones(64, 2),
        });
        using var w = LoRAWeights.Load(path);
        Assert.Equal(LoRAFormat.DiffusersLegacy, w.Format);
        Assert.Equal(new[] { "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0", "mid_block.attentions.0.transformer_blocks.0.attn2.to_v" },
            w.For(LoRATargets.Unet).Keys.OrderBy(k => k, StringComparer.Ordinal));
        Assert.Equal(new[] { "text_model.encoder.layers.0.self_attn.k_proj" }, w.For(LoRATargets.TextEncoder).Keys);
    }

    [Fact]
    public void ForeignFile_IsRefusedWithItsKey()
    {
        var path = Path.Combine(_dir, "unet.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["conv_in.weight"] = torch.ones(2) });
        var e = Assert.Throws<InvalidDataException>(() => LoRAWeights.Load(path));
        Assert.Contains("conv_in.weight", e.Message);
    }

    [Fact]
    public void AdapterForAnotherModel_IsRefusedNamingTheModule()
    {
        var path = Path.Combine(_dir, "other.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor>
        {
            ["lora_unet_down_blocks_3_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"] = torch.ones(2, 32),
            ["lora_unet_down_blocks_3_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight"] = torch.ones(32, 2),
        });
        using var unet = Unet();
        using var te = TextEncoder();
        var e = Assert.Throws<InvalidDataException>(() => LoRAAdapterSet.Apply(unet, te, new[] { new LoRAReference(path) }));
        Assert.Contains("down_blocks_3_attentions_0", e.Message);
    }
}
