using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Training;

public class LearningRateSchedulesTests
{
    static void Check(Func<int, double> f, params (int Step, double Expected)[] points)
    {
        foreach (var (step, expected) in points)
            Assert.True(Math.Abs(f(step) - expected) <= 1e-12, $"step {step}: {f(step)} vs {expected}");
    }

    [Fact]
    public void ConstantAndConstantWithWarmup()
    {
        Check(LearningRateSchedules.Create("constant", 10, 100), (0, 1), (5, 1), (1000, 1));
        Check(LearningRateSchedules.Create("constant_with_warmup", 10, 100), (0, 0), (1, 0.1), (5, 0.5), (9, 0.9), (10, 1), (100, 1), (500, 1));
        Check(LearningRateSchedules.Create("constant_with_warmup", 0, 100), (0, 1), (7, 1));
    }

    [Fact]
    public void Linear()
    {
        // warmup 10, total 110: decay (110 − s) / 100 after warmup, clamped at 0.
        Check(LearningRateSchedules.Create("linear", 10, 110), (0, 0), (5, 0.5), (9, 0.9), (10, 1), (11, 0.99), (60, 0.5), (109, 0.01), (110, 0), (150, 0));
    }

    [Fact]
    public void CosineIsHalfACycle()
    {
        // progress p = (s − 10)/100; 0.5(1 + cos(π p)).
        Check(LearningRateSchedules.Create("cosine", 10, 110),
            (3, 0.3), (10, 1), (35, 0.5 * (1 + Math.Sqrt(0.5))), (60, 0.5), (85, 0.5 * (1 - Math.Sqrt(0.5))), (110, 0), (120, 0.5 * (1 + Math.Cos(Math.PI * 1.1))));
    }

    [Fact]
    public void CosineWithHardRestarts()
    {
        // 2 cycles over 100 steps: cos half-wave on (2p mod 1); restart at p = 0.5; 0 from p ≥ 1.
        var f = LearningRateSchedules.Create("cosine_with_restarts", 0, 100, numCycles: 2);
        Check(f, (0, 1), (25, 0.5), (49, 0.5 * (1 + Math.Cos(Math.PI * 0.98))), (50, 1), (75, 0.5), (99, 0.5 * (1 + Math.Cos(Math.PI * 0.98))), (100, 0), (130, 0));
        Check(LearningRateSchedules.Create("cosine_with_restarts", 4, 104), (2, 0.5), (4, 1), (54, 0.5));   // default 1 cycle
    }

    [Fact]
    public void PolynomialDecaysToLrEnd()
    {
        // base 1e-4, end 1e-7, power 2, warmup 10, total 110: ((1e-4 − 1e-7)·r² + 1e-7)/1e-4 with r = 1 − (s − 10)/100.
        var f = LearningRateSchedules.Create("polynomial", 10, 110, power: 2, baseLr: 1e-4);
        Check(f, (5, 0.5), (10, 1), (60, ((1e-4 - 1e-7) * 0.25 + 1e-7) / 1e-4), (110, 1e-3), (111, 1e-3), (1000, 1e-3));
        Assert.Throws<ArgumentException>(() => LearningRateSchedules.Create("polynomial", 0, 10));   // needs the base LR
        Assert.Throws<ArgumentException>(() => LearningRateSchedules.Create("polynomial", 0, 10, baseLr: 1e-8));   // base ≤ lr_end
    }

    [Fact]
    public void NamesAreCaseInsensitiveAndUnknownNamesAreListed()
    {
        Check(LearningRateSchedules.Create("  Cosine_With_Restarts ", 0, 100), (50, 0.5), (25, 0.5 * (1 + Math.Sqrt(0.5))));
        var e = Assert.Throws<ArgumentException>(() => LearningRateSchedules.Create("cosine_annealing", 0, 100));
        foreach (var name in LearningRateSchedules.Names) Assert.Contains(name, e.Message);
        Assert.Contains("cosine_annealing", e.Message);
    }
}
