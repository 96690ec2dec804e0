using DreamBooth.Engine.IO;
using DreamBooth.Engine.Models;
using DreamBooth.Engine.Models.Unets;

namespace DreamBooth.Engine.Tests.Models;

/// <summary>
/// SD-2.x-style configs at tiny sizes: the parameter names and shapes diffusers would create, head counts, forward,
/// and refusals. Expected keys are derived independently of the model code: skip channels come from simulating the
/// stack of skip tensors rather than from diffusers' prev_output_channel formula.
/// </summary>
public sealed class UNetConfigTests
{
    // SD-2 style: linear projections, attention_head_dim is a per-block HEAD COUNT list (8 channels per head everywhere),
    // upcast attention, cross-attention-only first block, per-block transformer depth, 4 blocks.
    const string Sd2Style = """
    {
      "_class_name": "UNet2DConditionModel",
      "act_fn": "silu",
      "attention_head_dim": [1, 2, 4, 4],
      "block_out_channels": [8, 16, 32, 32],
      "cross_attention_dim": 12,
      "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
      "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
      "layers_per_block": 1,
      "norm_num_groups": 4,
      "num_attention_heads": null,
      "only_cross_attention": [true, false, false, false],
      "transformer_layers_per_block": [1, 2, 2, 1],
      "upcast_attention": true,
      "use_linear_projection": true,
      "sample_size": 16,
      "some_future_key": {"kept": true}
    }
    """;

    static Dictionary<string, long[]> ExpectedKeys(int[] ch, string[] down, string[] up, int layers, int[] tl, int cross,
        bool linear, bool[] onlyCross, int inCh = 4, int outCh = 4)
    {
        var keys = new Dictionary<string, long[]>();
        int temb = ch[0] * 4;
        void P(string name, params long[] shape) => keys[name] = shape;
        void Norm(string p, int c) { P(p + ".weight", c); P(p + ".bias", c); }
        void Lin(string p, int o, int i, bool bias = true) { P(p + ".weight", o, i); if (bias) P(p + ".bias", o); }
        void Conv(string p, int o, int i, int k) { P(p + ".weight", o, i, k, k); P(p + ".bias", o); }
        void Resnet(string p, int cin, int cout)
        {
            Norm(p + ".norm1", cin); Conv(p + ".conv1", cout, cin, 3); Lin(p + ".time_emb_proj", cout, temb);
            Norm(p + ".norm2", cout); Conv(p + ".conv2", cout, cout, 3);
            if (cin != cout) Conv(p + ".conv_shortcut", cout, cin, 1);
        }
        void Transformer(string p, int c, int depth, bool only)
        {
            Norm(p + ".norm", c);
            if (linear) Lin(p + ".proj_in", c, c); else Conv(p + ".proj_in", c, c, 1);
            for (int j = 0; j < depth; j++)
            {
                string b = $"{p}.transformer_blocks.{j}";
                Norm(b + ".norm1", c); Norm(b + ".norm2", c); Norm(b + ".norm3", c);
                Lin(b + ".attn1.to_q", c, c, false); Lin(b + ".attn1.to_k", c, only ? cross : c, false);
                Lin(b + ".attn1.to_v", c, only ? cross : c, false); Lin(b + ".attn1.to_out.0", c, c);
                Lin(b + ".attn2.to_q", c, c, false); Lin(b + ".attn2.to_k", c, cross, false);
                Lin(b + ".attn2.to_v", c, cross, false); Lin(b + ".attn2.to_out.0", c, c);
                Lin(b + ".ff.net.0.proj", 8 * c, c); Lin(b + ".ff.net.2", c, 4 * c);
            }
            if (linear) Lin(p + ".proj_out", c, c); else Conv(p + ".proj_out", c, c, 1);
        }

        Conv("conv_in", ch[0], inCh, 3);
        Lin("time_embedding.linear_1", temb, ch[0]); Lin("time_embedding.linear_2", temb, temb);
        var skips = new Stack<int>(); skips.Push(ch[0]);
        int cur = ch[0];
        for (int i = 0; i < ch.Length; i++)
        {
            for (int l = 0; l < layers; l++)
            {
                Resnet($"down_blocks.{i}.resnets.{l}", cur, ch[i]); cur = ch[i];
                if (down[i] == "CrossAttnDownBlock2D") Transformer($"down_blocks.{i}.attentions.{l}", cur, tl[i], onlyCross[i]);
                skips.Push(cur);
            }
            if (i < ch.Length - 1) { Conv($"down_blocks.{i}.downsamplers.0.conv", cur, cur, 3); skips.Push(cur); }
        }
        Resnet("mid_block.resnets.0", cur, cur); Transformer("mid_block.attentions.0", cur, tl[^1], false); Resnet("mid_block.resnets.1", cur, cur);
        for (int i = 0; i < ch.Length; i++)
        {
            int target = ch[ch.Length - 1 - i];
            for (int l = 0; l < layers + 1; l++)
            {
                Resnet($"up_blocks.{i}.resnets.{l}", cur + skips.Pop(), target); cur = target;
                if (up[i] == "CrossAttnUpBlock2D") Transformer($"up_blocks.{i}.attentions.{l}", cur, tl[ch.Length - 1 - i], onlyCross[ch.Length - 1 - i]);
            }
            if (i < ch.Length - 1) Conv($"up_blocks.{i}.upsamplers.0.conv", cur, cur, 3);
        }
        Assert.Empty(skips);
        Norm("conv_norm_out", ch[0]); Conv("conv_out", outCh, ch[0], 3);
        return keys;
    }

    static void AssertKeys(Dictionary<string, long[]> expected, UNet2DConditionModel unet)
    {
        var actual = unet.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        var missing = expected.Keys.Except(actual.Keys).OrderBy(k => k).ToList();
        var extra = actual.Keys.Except(expected.Keys).OrderBy(k => k).ToList();
        Assert.True(missing.Count == 0 && extra.Count == 0,
            $"missing: {string.Join(", ", missing.Take(8))}; unexpected: {string.Join(", ", extra.Take(8))}");
        foreach (var (k, shape) in expected)
            Assert.True(shape.SequenceEqual(actual[k]), $"{k}: expected [{string.Join(",", shape)}], got [{string.Join(",", actual[k])}]");
    }

    [Fact]
    public void Sd2StyleConfig_CreatesDiffusersKeysAndShapes()
    {
        using var unet = UNet2DConditionModel.FromConfig(UNet2DConditionConfig.Parse(Sd2Style));
        var expected = ExpectedKeys(new[] { 8, 16, 32, 32 },
            new[] { "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D" },
            new[] { "UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D" },
            1, new[] { 1, 2, 2, 1 }, 12, linear: true, new[] { true, false, false, false });
        AssertKeys(expected, unet);
        Assert.Equal(new long[] { 8, 8 }, unet.state_dict()["down_blocks.0.attentions.0.proj_in.weight"].shape);   // Linear, not 1×1 conv
        Assert.Equal(new long[] { 8, 12 }, unet.state_dict()["up_blocks.3.attentions.1.transformer_blocks.0.attn1.to_k.weight"].shape);
    }

    [Fact]
    public void TinySdConfig_KeysEqualDiffusersFile()
    {
        var config = UNet2DConditionConfig.Load(Path.Combine(Fixtures.TinySd, "unet", "config.json"));
        using var unet = UNet2DConditionModel.FromConfig(config);
        var expected = ExpectedKeys(new[] { 32, 64 }, new[] { "CrossAttnDownBlock2D", "DownBlock2D" },
            new[] { "UpBlock2D", "CrossAttnUpBlock2D" }, 2, new[] { 1, 1 }, 32, linear: false, new[] { false, false });
        AssertKeys(expected, unet);
        using var file = SafetensorsFile.Open(Path.Combine(Fixtures.TinySd, "unet", "diffusion_pytorch_model.safetensors"));
        Assert.Equal(expected.Keys.OrderBy(k => k, StringComparer.Ordinal), file.Keys.OrderBy(k => k, StringComparer.Ordinal));
        Assert.Empty(StateDictLoader.Load(unet, file));
    }

    [Fact]
    public void Sd2StyleConfig_HonoursPerBlockHeadCountsReversedForUpBlocks()
    {
        using var unet = UNet2DConditionModel.FromConfig(UNet2DConditionConfig.Parse(Sd2Style));
        var heads = unet.named_modules().Where(m => m.module is Attention)
            .ToDictionary(m => m.name, m => ((Attention)m.module).Heads);
        int HeadsUnder(string prefix) => heads.Where(h => h.Key.StartsWith(prefix)).Select(h => h.Value).Distinct().Single();
        Assert.Equal(1, HeadsUnder("down_blocks.0."));
        Assert.Equal(2, HeadsUnder("down_blocks.1."));
        Assert.Equal(4, HeadsUnder("down_blocks.2."));
        Assert.Equal(4, HeadsUnder("mid_block."));
        Assert.Equal(4, HeadsUnder("up_blocks.1."));
        Assert.Equal(2, HeadsUnder("up_blocks.2."));
        Assert.Equal(1, HeadsUnder("up_blocks.3."));
        Assert.All(unet.named_modules().Select(m => m.module).OfType<Attention>(), a => Assert.Equal(8, a.DimHead));
    }

    [Theory]
    [InlineData(16, 16)]
    [InlineData(12, 20)]   // not a multiple of 2^3: upsamplers get the skip tensors' sizes
    public void Sd2StyleConfig_ForwardRuns(int h, int w)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        using var unet = UNet2DConditionModel.FromConfig(UNet2DConditionConfig.Parse(Sd2Style));
        var sample = torch.randn(2, 4, h, w, generator: new torch.Generator(1));
        var context = torch.randn(2, 5, 12, generator: new torch.Generator(2));
        var output = unet.forward(sample, torch.tensor(new long[] { 3, 700 }), context);
        Assert.Equal(new long[] { 2, 4, h, w }, output.shape);
        Assert.True(output.isfinite().all().item<bool>());
        Assert.True(output.std().item<float>() > 0);
    }

    [Fact]
    public void GradientCheckpointing_UsesRunnerOnlyWithGradAndGivesSameOutput()
    {
        using var scope = torch.NewDisposeScope();
        using var unet = UNet2DConditionModel.FromConfig(UNet2DConditionConfig.Parse(Sd2Style));
        var sample = torch.randn(1, 4, 8, 8, generator: new torch.Generator(1));
        var context = torch.randn(1, 3, 12, generator: new torch.Generator(2));
        var plain = unet.forward(sample, 10L, context).detach();

        int calls = 0;
        unet.GradientCheckpointing = true;
        unet.CheckpointRunner = (fn, inputs) => { calls++; return fn(inputs); };
        var viaRunner = unet.forward(sample, 10L, context);
        Assert.True(calls > 0);
        Assert.True(viaRunner.detach().Equals(plain));

        calls = 0;
        using (torch.no_grad()) unet.forward(sample, 10L, context);
        Assert.Equal(0, calls);

        unet.CheckpointRunner = null;
        Assert.Throws<InvalidOperationException>(() => unet.forward(sample, 10L, context));
    }

    [Theory]
    [InlineData("dual_cross_attention", "true")]
    [InlineData("class_embed_type", "\"timestep\"")]
    [InlineData("addition_embed_type", "\"text_time\"")]
    [InlineData("time_embedding_type", "\"fourier\"")]
    [InlineData("resnet_time_scale_shift", "\"scale_shift\"")]
    [InlineData("num_attention_heads", "8")]
    [InlineData("mid_block_type", "\"UNetMidBlock2DSimpleCrossAttn\"")]
    [InlineData("down_block_types", "[\"SimpleCrossAttnDownBlock2D\", \"DownBlock2D\"]")]
    [InlineData("transformer_layers_per_block", "[[1, 2], 1]")]
    [InlineData("attention_head_dim", "[8, 8, 8]")]
    [InlineData("act_fn", "\"softsign\"")]
    public void UnsupportedConfig_IsRefusedNamingKeyAndValue(string key, string value)
    {
        var json = ConfigJson.Load(Path.Combine(Fixtures.TinySd, "unet", "config.json"));
        json.Root[key] = System.Text.Json.Nodes.JsonNode.Parse(value);
        var e = Assert.Throws<ModelConfigException>(() => new UNet2DConditionConfig(json));
        Assert.Equal(key, e.Key);
        Assert.Contains(key, e.Message);
        Assert.Contains(System.Text.Json.Nodes.JsonNode.Parse(value)!.ToJsonString(), e.Message);
    }
}
