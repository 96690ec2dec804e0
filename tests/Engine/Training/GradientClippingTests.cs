using DreamBooth.Engine.Training;
using TorchSharp.Modules;

namespace DreamBooth.Engine.Tests.Training;

public class GradientClippingTests
{
    static Parameter WithGrad(float[] grad)
    {
        var p = new Parameter(torch.zeros(grad.Length), requires_grad: true);
        p.grad = torch.tensor(grad);
        return p;
    }

    [Fact]
    public void ClipsToMaxNormAndReturnsTheTotalBeforeClipping()
    {
        using var scope = torch.NewDisposeScope();
        // ‖(3,4)‖ = 5, ‖(0,12)‖ = 12 → total 13.
        var a = WithGrad([3, 4]); var b = WithGrad([0, 12]);
        var noGrad = new Parameter(torch.zeros(2), requires_grad: true);
        Assert.Equal(13.0, GradientClipping.ClipGradNorm([a, b, noGrad], 100), 5);
        Assert.True(a.grad!.Equals(torch.tensor(new float[] { 3, 4 })));   // coef ≥ 1: untouched

        double total = GradientClipping.ClipGradNorm([a, b], 6.5);
        Assert.Equal(13.0, total, 5);
        float coef = 6.5f / (13f + 1e-6f);
        Assert.True(a.grad!.allclose(torch.tensor(new[] { 3 * coef, 4 * coef }), rtol: 1e-6, atol: 0));
        Assert.True(b.grad!.allclose(torch.tensor(new[] { 0, 12 * coef }), rtol: 1e-6, atol: 0));
        Assert.Equal(6.5, GradientClipping.ClipGradNorm([a, b], 1e9), 4);
        Assert.Equal(0.0, GradientClipping.ClipGradNorm([noGrad], 1.0));
    }

    [Fact]
    public void MatchesTorchSharpClipGradNormBitForBit()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(9);
        var shapes = new long[][] { [17, 5], [5], [3, 3, 2, 2] };
        var ours = shapes.Select(s => { var p = new Parameter(torch.zeros(s), true); p.grad = torch.randn(s); return p; }).ToArray();
        var theirs = ours.Select(p => { var q = new Parameter(torch.zeros(p.shape), true); q.grad = p.grad!.clone(); return q; }).ToArray();
        double t1 = GradientClipping.ClipGradNorm(ours, 0.5);
        double t2 = torch.nn.utils.clip_grad_norm_(theirs, 0.5);
        Assert.Equal(t2, t1, 5);
        for (int i = 0; i < ours.Length; i++) Assert.True(ours[i].grad!.Equals(theirs[i].grad!), $"grad {i}: max {Fixtures.MaxAbs(ours[i].grad!, theirs[i].grad!):E2}");
    }

    [Fact]
    public void NonFiniteTotalIsReportedWithoutScaling()
    {
        using var scope = torch.NewDisposeScope();
        var a = WithGrad([1, float.PositiveInfinity]); var b = WithGrad([3, 4]);
        Assert.True(double.IsPositiveInfinity(GradientClipping.ClipGradNorm([a, b], 1.0)));
        Assert.True(b.grad!.Equals(torch.tensor(new float[] { 3, 4 })));
        var c = WithGrad([float.NaN, 0]);
        Assert.True(double.IsNaN(GradientClipping.ClipGradNorm([c, b], 1.0)));
        Assert.True(b.grad!.Equals(torch.tensor(new float[] { 3, 4 })));
    }
}
