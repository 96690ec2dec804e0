using DreamBooth.Engine.Lora;
using DreamBooth.Engine.Models.TextEncoders;
using DreamBooth.Engine.Models.Unets;

namespace DreamBooth.Engine.Tests.Lora;

/// <summary>LoRA adapters on the tiny pipeline's UNet and CLIP: placement, PEFT init, identity at B = 0, gradients, merge.</summary>
public sealed class LoRANetworkTests
{
    static UNet2DConditionModel Unet() => UNet2DConditionModel.FromPretrained(Path.Combine(Fixtures.TinySd, "unet"));
    static ClipTextModel TextEncoder() => ClipTextModel.FromPretrained(Path.Combine(Fixtures.TinySd, "text_encoder"));

    static Tensor RunUnet(UNet2DConditionModel unet)
    {
        using var _ = torch.no_grad();
        var sample = torch.randn(2, 4, 16, 16, generator: new torch.Generator(0));
        var context = torch.randn(2, 7, 32, generator: new torch.Generator(1));
        return unet.forward(sample, torch.tensor(new long[] { 10, 700 }), context);
    }

    static Tensor RunTextEncoder(ClipTextModel te)
    {
        using var _ = torch.no_grad();
        var ids = torch.tensor(new long[] { 49406, 320, 1125, 539, 49407, 49407, 49407 }).unsqueeze(0);
        using var output = te.Forward(ids);
        return output.LastHiddenState.clone();
    }

    /// <summary>Gives B random values so the adapter changes the output (a trained adapter).</summary>
    static void Randomize(LoRANetwork network, long seed)
    {
        using var _ = torch.no_grad();
        var g = new torch.Generator((ulong)seed);
        foreach (var (_, _, layer) in network.Layers) layer.Up.copy_(torch.randn(layer.Up.shape, generator: g) * 0.1);
    }

    [Fact]
    public void Targets_AreTheAttentionProjections_WithDiffusersKeys()
    {
        using var unet = Unet();
        using var te = TextEncoder();
        using var u = LoRANetwork.Create(unet, LoRATargets.Unet, rank: 4, alpha: 4);
        using var t = LoRANetwork.Create(te, LoRATargets.TextEncoder, rank: 4, alpha: 4);
        var keys = u.NamedParameters().Concat(t.NamedParameters()).Select(p => p.Name).ToHashSet();
        Assert.Contains("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight", keys);
        Assert.Contains("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0.lora_B.weight", keys);
        Assert.Contains("unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight", keys);
        Assert.Contains("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight", keys);
        Assert.Contains("text_encoder.text_model.encoder.layers.4.self_attn.out_proj.lora_B.weight", keys);
        // Every transformer block has attn1 and attn2 with 4 projections; CLIP has 4 per layer (5 layers).
        int blocks = unet.named_modules().Count(m => m.name.EndsWith("transformer_blocks.0", StringComparison.Ordinal));
        Assert.Equal(blocks * 2 * 4, u.Layers.Count);
        Assert.Equal(5 * 4, t.Layers.Count);
        Assert.DoesNotContain(u.Layers, l => l.Name.Contains("ff.") || l.Name.Contains("proj_in"));
    }

    [Fact]
    public void Init_IsPeftKaiming_AndSeeded()
    {
        using var unet = Unet();
        using var a = LoRANetwork.Create(unet, LoRATargets.Unet, 4, 4, new torch.Generator(7));
        a.Detach();
        using var b = LoRANetwork.Create(unet, LoRATargets.Unet, 4, 4, new torch.Generator(7));
        foreach (var ((_, _, la), (_, _, lb)) in a.Layers.Zip(b.Layers))
        {
            Assert.True(la.Down.Equals(lb.Down), "same seed, same A");
            double bound = 1.0 / Math.Sqrt(la.Down.shape[1]);
            Assert.True(la.Down.abs().max().item<float>() <= bound, "A within kaiming_uniform(a=√5) bound 1/√fan_in");
            Assert.True(la.Down.abs().max().item<float>() > bound * 0.5, "A fills its range");
            Assert.Equal(0f, la.Up.abs().sum().item<float>());
            Assert.Equal(new long[] { 4, la.Down.shape[1] }, la.Down.shape);
        }
    }

    [Fact]
    public void ZeroB_LeavesOutputsBitIdentical()
    {
        using var unet = Unet();
        using var te = TextEncoder();
        using var baseU = RunUnet(unet);
        using var baseT = RunTextEncoder(te);
        using var u = LoRANetwork.Create(unet, LoRATargets.Unet, 4, 4, new torch.Generator(1));
        using var t = LoRANetwork.Create(te, LoRATargets.TextEncoder, 4, 4, new torch.Generator(2));
        using var withU = RunUnet(unet);
        using var withT = RunTextEncoder(te);
        Assert.True(withU.Equals(baseU), "UNet output changed by a B = 0 adapter");
        Assert.True(withT.Equals(baseT), "text encoder output changed by a B = 0 adapter");
    }

    [Fact]
    public void Adapter_ChangesOutput_ScaleZeroAndDetachRestoreIt()
    {
        using var unet = Unet();
        using var baseU = RunUnet(unet);
        using var u = LoRANetwork.Create(unet, LoRATargets.Unet, 4, 8, new torch.Generator(1));
        Randomize(u, 3);
        using var adapted = RunUnet(unet);
        Assert.True(Fixtures.RelativeError(adapted, baseU) > 1e-3, "a non-zero adapter must change the output");
        u.Multiplier = 0;
        using var zero = RunUnet(unet);
        Assert.True(zero.Equals(baseU), "scale 0 must equal the base model");
        u.Multiplier = 1;
        u.Detach();
        using var detached = RunUnet(unet);
        Assert.True(detached.Equals(baseU), "detached adapter must restore the base model");
    }

    [Fact]
    public void Backward_ReachesOnlyAdapters()
    {
        using var unet = Unet();
        foreach (var p in unet.parameters()) p.requires_grad = false;
        using var u = LoRANetwork.Create(unet, LoRATargets.Unet, 4, 4, new torch.Generator(1));
        unet.train();
        using (var scope = torch.NewDisposeScope())
        {
            var sample = torch.randn(1, 4, 16, 16, generator: new torch.Generator(0));
            var context = torch.randn(1, 5, 32, generator: new torch.Generator(1));
            unet.forward(sample, torch.tensor(new long[] { 400 }), context).pow(2).mean().backward();
        }
        Assert.All(unet.parameters(), p => Assert.Null(p.grad));
        // With B = 0, dL/dA = 0 (as in PEFT) but dL/dB = scale · (A x)ᵀ·g is not.
        Assert.All(u.Layers, l => Assert.True(l.Layer.Up.grad is not null && l.Layer.Up.grad.abs().sum().item<float>() > 0, l.Name + ": B has no gradient"));
    }

    [Fact]
    public void Merge_EqualsUnmergedAdapter()
    {
        using var unet = Unet();
        using var te = TextEncoder();
        using var u = LoRANetwork.Create(unet, LoRATargets.Unet, 4, 8, new torch.Generator(1));
        using var t = LoRANetwork.Create(te, LoRATargets.TextEncoder, 2, 1, new torch.Generator(2));
        Randomize(u, 3); Randomize(t, 4);
        u.Multiplier = 0.7;
        using var adaptedU = RunUnet(unet);
        using var adaptedT = RunTextEncoder(te);
        u.Merge(); t.Merge();
        Assert.False(u.IsAttached);
        using var mergedU = RunUnet(unet);
        using var mergedT = RunTextEncoder(te);
        double eu = Fixtures.RelativeError(mergedU, adaptedU), et = Fixtures.RelativeError(mergedT, adaptedT);
        Assert.True(eu < 1e-5, $"UNet merged vs adapter relative error {eu:E2}");
        Assert.True(et < 1e-5, $"text encoder merged vs adapter relative error {et:E2}");
    }
}
