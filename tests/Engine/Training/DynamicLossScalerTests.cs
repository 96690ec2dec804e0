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
