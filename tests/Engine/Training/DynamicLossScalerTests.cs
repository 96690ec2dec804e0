using DreamBooth.Engine.Training;
using TorchSharp.Modules;
using AdamW = DreamBooth.Engine.Training.AdamW;

namespace DreamBooth.Engine.Tests.Training;

public class DynamicLossScalerTests
{
    [Fact]
    public void InfGradientSkipsTheStepHalvesTheScaleThenGrowsBack()
    {
        using var scope = torch.NewDisposeScope();
        var w = new Parameter(torch.tensor(new[] { 1f, 2f }), requires_grad: true);
        using var opt = new AdamW([("w", w)]);
        var scaler = new DynamicLossScaler(growthInterval: 3);
        Assert.Equal(65536.0, scaler.LossScale);

        bool TrainStep(bool injectInf)
        {
            using var s = torch.NewDisposeScope();
            var loss = (w * w).sum();
            scaler.Scale(loss).backward();
            if (injectInf) using (torch.no_grad()) w.grad![0] = float.PositiveInfinity;
            bool finite = scaler.UnscaleAndCheck([w]);
            if (finite)
            {
                Assert.True(w.grad!.allclose(2 * w, rtol: 0, atol: 0));   // unscaled exactly (power-of-two scale)
                opt.Step(1e-3);
            }
            scaler.Update(finite);
            opt.ZeroGrad();
            return finite;
        }

        Assert.True(TrainStep(false));
        Assert.Equal((65536.0, 1), (scaler.LossScale, scaler.GrowthTracker));
        var before = w.clone();
        Assert.False(TrainStep(injectInf: true));
        Assert.True(w.Equals(before));                          // step skipped
        Assert.Equal((32768.0, 0), (scaler.LossScale, scaler.GrowthTracker));
        Assert.True(TrainStep(false)); Assert.True(TrainStep(false));
        Assert.Equal((32768.0, 2), (scaler.LossScale, scaler.GrowthTracker));
        Assert.True(TrainStep(false));                           // 3rd finite step in a row: grow
        Assert.Equal((65536.0, 0), (scaler.LossScale, scaler.GrowthTracker));
        Assert.False(w.Equals(before));
    }

    /// <summary>
    /// CPU float32 gradients are unscaled and checked in one fused pass: the same products as libtorch's mul_ bit for
    /// bit, and an inf or NaN anywhere (vector body, scalar tail, an element that only overflows when multiplied)
    /// is found, across several parallel chunks.
    /// </summary>
    [Theory]
    [InlineData(-1, 0f)]                        // all finite
    [InlineData(5, float.PositiveInfinity)]     // in the vector body of the first chunk
    [InlineData(200_003, float.NaN)]            // in a later chunk
    [InlineData(262_142, float.NegativeInfinity)] // the last element (the scalar tail of an odd length)
    [InlineData(77, 3e38f)]                     // finite, but ×2 overflows
    public void FusedCpuUnscale_MatchesMulAndFindsEveryNonFiniteValue(int at, float value)
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(5);
        const int n = 262_144 - 1;   // four chunks of the parallel loop, and a length no vector width divides
        var g = torch.randn(n) * 1000f;
        var other = torch.randn(3, 5);
        if (at >= 0) g[at] = value;
        float invScale = at == 77 ? 2f : (float)(1.0 / 1024.0 / 3.0);   // not a power of two: rounding shows
        var expected = g.mul(invScale);
        var expectedOther = other.mul(invScale);
        var scaler = new DynamicLossScaler(initScale: 1.0 / invScale);
        Assert.Equal(invScale, (float)(1.0 / scaler.LossScale));
        bool finite = scaler.UnscaleAndCheck([g, null, other]);
        Assert.Equal(at < 0, finite);
        Assert.True(g.isfinite().logical_not().any().item<bool>() == !finite);
        Assert.True(g.nan_to_num().Equals(expected.nan_to_num()), "fused products differ from mul_");
        Assert.True(other.Equals(expectedOther));
    }

    [Fact]
    public void StateRoundTrips()
    {
        var a = new DynamicLossScaler(growthInterval: 10);
        a.Update(false); a.Update(true); a.Update(true);
        var b = new DynamicLossScaler(growthInterval: 10);
        b.LoadState(a.GetState());
        Assert.Equal(new LossScalerState(32768.0, 2), b.GetState());
        Assert.Throws<ArgumentException>(() => b.LoadState(new LossScalerState(double.NaN, 0)));
        Assert.Throws<ArgumentException>(() => b.LoadState(new LossScalerState(1.0, 10)));
    }
}
