using DreamBooth.Engine.Models;
using static TorchSharp.torch.nn.functional;

namespace DreamBooth.Engine.Tests.Models;

/// <summary>Shared blocks against the math they stand for, computed by hand here.</summary>
public sealed class BlocksTests
{
    static Tensor P(nn.Module m, string name) => m.state_dict()[name];

    /// <summary>softmax(QKᵀ/√d)V per head, heads split from the projected width, then to_out.</summary>
    static Tensor ManualAttention(Attention a, Tensor x, Tensor context, int heads)
    {
        var q = linear(x, P(a, "to_q.weight"));
        var k = linear(context, P(a, "to_k.weight"));
        var v = linear(context, P(a, "to_v.weight"));
        long b = x.shape[0], d = q.shape[2] / heads;
        Tensor Split(Tensor t) => t.reshape(b, t.shape[1], heads, d).permute(0, 2, 1, 3);
        var w = softmax(Split(q).matmul(Split(k).transpose(-1, -2)) / Math.Sqrt(d), -1);
        var o = w.matmul(Split(v)).permute(0, 2, 1, 3).reshape(b, x.shape[1], heads * d);
        return linear(o, P(a, "to_out.0.weight"), P(a, "to_out.0.bias"));
    }

    [Theory]
    [InlineData(1, 16)]
    [InlineData(2, 8)]
    [InlineData(4, 4)]
    public void Attention_HonoursHeadCount(int heads, int dimHead)
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(3);
        using var attn = new Attention(16, crossAttentionDim: 6, heads: heads, dimHead: dimHead);
        var x = torch.randn(2, 10, 16);
        var context = torch.randn(2, 7, 6);
        var expected = ManualAttention(attn, x, context, heads);
        Fixtures.AssertRelative(attn.forward(x, context), expected, 1e-6, $"attention with {heads} heads");
        // the head split matters: the same weights read as one head give a different result
        if (heads > 1) Assert.True(Fixtures.RelativeError(ManualAttention(attn, x, context, 1), expected) > 1e-3);
    }

    [Fact]
    public void Attention_UpcastInBFloat16_StaysCloseToFloat32()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(4);
        using var attn = new Attention(16, heads: 2, dimHead: 8, upcastAttention: true);
        var x = torch.randn(1, 12, 16);
        var reference = attn.forward(x, null);
        attn.to(ScalarType.BFloat16);
        var half = attn.forward(x.to(ScalarType.BFloat16), null);
        Assert.Equal(ScalarType.BFloat16, half.dtype);
        Fixtures.AssertRelative(half, reference, 3e-2, "bf16 upcast attention vs fp32");
    }

    [Fact]
    public void Attention_SpatialWithGroupNormAndResidual_MatchesManual()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(5);
        using var attn = new Attention(8, heads: 1, dimHead: 8, bias: true, normNumGroups: 2, eps: 1e-6, residualConnection: true, rescaleOutputFactor: 2.0);
        var x = torch.randn(2, 8, 3, 5);
        var tokens = group_norm(x, 2, P(attn, "group_norm.weight"), P(attn, "group_norm.bias"), 1e-6).reshape(2, 8, 15).transpose(1, 2);
        var q = linear(tokens, P(attn, "to_q.weight"), P(attn, "to_q.bias"));
        var k = linear(tokens, P(attn, "to_k.weight"), P(attn, "to_k.bias"));
        var v = linear(tokens, P(attn, "to_v.weight"), P(attn, "to_v.bias"));
        var o = softmax(q.matmul(k.transpose(1, 2)) / Math.Sqrt(8), -1).matmul(v);
        o = linear(o, P(attn, "to_out.0.weight"), P(attn, "to_out.0.bias")).transpose(1, 2).reshape(2, 8, 3, 5);
        Fixtures.AssertRelative(attn.forward(x, null), (o + x) / 2.0, 1e-6, "VAE-style spatial attention");
    }

    [Fact]
    public void Transformer2DModel_LinearAndConvProjections_AreTheSameMath()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(6);
        using var conv = new Transformer2DModel(2, 4, 8, normNumGroups: 2, crossAttentionDim: 5);
        using var lin = new Transformer2DModel(2, 4, 8, normNumGroups: 2, crossAttentionDim: 5, useLinearProjection: true);
        var weights = conv.state_dict().ToDictionary(kv => kv.Key, kv => kv.Key.StartsWith("proj_") && kv.Value.dim() == 4 ? kv.Value.flatten(1) : kv.Value);
        Assert.Equal(new long[] { 8, 8, 1, 1 }, conv.state_dict()["proj_in.weight"].shape);
        Assert.Equal(new long[] { 8, 8 }, lin.state_dict()["proj_in.weight"].shape);
        lin.load_state_dict(weights);
        var x = torch.randn(2, 8, 3, 4);
        var context = torch.randn(2, 6, 5);
        Fixtures.AssertRelative(lin.forward(x, context), conv.forward(x, context), 1e-6, "linear vs 1×1 conv projections");
    }

    [Fact]
    public void Downsample2D_PaddingZero_PadsRightAndBottomOnly()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(7);
        using var down = new Downsample2D(3, 3, padding: 0);
        var x = torch.randn(1, 3, 6, 6);
        var expected = conv2d(pad(x, new long[] { 0, 1, 0, 1 }), P(down, "conv.weight"), P(down, "conv.bias"), strides: new long[] { 2, 2 });
        var actual = down.forward(x);
        Assert.Equal(new long[] { 1, 3, 3, 3 }, actual.shape);
        Fixtures.AssertRelative(actual, expected, 1e-6, "asymmetric padding downsample");
    }

    [Fact]
    public void Timesteps_OddWidthAndShift_FollowFormula()
    {
        using var scope = torch.NewDisposeScope();
        using var proj = new Timesteps(7, flipSinToCos: false, downscaleFreqShift: 1);
        var t = torch.tensor(new[] { 2.5f, 100f });
        var emb = proj.forward(t);
        Assert.Equal(new long[] { 2, 7 }, emb.shape);
        for (int row = 0; row < 2; row++)
            for (int i = 0; i < 3; i++)
            {
                double arg = t[row].item<float>() * Math.Exp(-Math.Log(10000) * i / (3 - 1.0));
                Assert.InRange(emb[row, i].item<float>() - Math.Sin(arg), -1e-4, 1e-4);
                Assert.InRange(emb[row, 3 + i].item<float>() - Math.Cos(arg), -1e-4, 1e-4);
            }
        Assert.Equal(0f, emb[0, 6].item<float>());
    }

    [Fact]
    public void Norms_StartAsIdentityAffine()
    {
        using var scope = torch.NewDisposeScope();
        var block = new ResnetBlock2D(8, 16, 4, groups: 4);
        foreach (var (name, p) in block.named_parameters().Where(p => p.name.StartsWith("norm")))
            Assert.True(p.Equals(name.EndsWith("weight") ? torch.ones_like(p) : torch.zeros_like(p)), name);
        Assert.Equal(new long[] { 16, 8, 1, 1 }, block.state_dict()["conv_shortcut.weight"].shape);
    }
}
