using DreamBooth.Engine.Training;
using TorchSharp.Modules;
using AdamW = DreamBooth.Engine.Training.AdamW;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>The one-pass CPU kernels against AdamW's tensor-op path, on tensors that span several parallel chunks.</summary>
public class FusedAdamWCpuTests(Xunit.Abstractions.ITestOutputHelper output)
{
    static Parameter Param(Tensor t) => new(t.clone(), requires_grad: true);

    static bool Same(Tensor x, Tensor y) => x.shape.SequenceEqual(y.shape) && x.eq(y).all().item<bool>();

    static (float[] Fused, float[] Tensors) RunBoth(bool use8Bit, long numel, int steps)
    {
        using var scope = torch.NewDisposeScope();
        // A generator of the test's own: the global one is shared with test classes that run in parallel.
        var gen = new torch.Generator(3);
        var w0 = torch.randn(numel, generator: gen);
        var grads = Enumerable.Range(0, steps).Select(_ => torch.randn(numel, generator: gen) * 0.01).ToList();
        var a = Param(w0); var b = Param(w0);
        var options = new AdamWOptions { WeightDecay = 0.01, Use8Bit = use8Bit };
        using var fused = new AdamW([("w", a)], options);
        using var tensors = new AdamW([("w", b)], options) { FusedCpu = false };
        foreach (var g in grads)
        {
            a.grad = g.clone(); b.grad = g.clone();
            fused.Step(1e-3); tensors.Step(1e-3);
            fused.ZeroGrad(); tensors.ZeroGrad();
        }
        if (use8Bit)
        {
            // The stored state, not only the weights, must be the same: codes may differ only where a value sits on a
            // rounding boundary between two codes.
            var (sa, sb) = (fused.GetState("w")!, tensors.GetState("w")!);
            double codeMismatch = (sa.ExpAvgCodes! != sb.ExpAvgCodes!).to(ScalarType.Float64).mean().item<double>();
            double sqMismatch = (sa.ExpAvgSqCodes! != sb.ExpAvgSqCodes!).to(ScalarType.Float64).mean().item<double>();
            Assert.True(codeMismatch < 1e-4 && sqMismatch < 1e-4, $"8-bit codes differ on {codeMismatch:P4} / {sqMismatch:P4} of elements");
        }
        return (a.data<float>().ToArray(), b.data<float>().ToArray());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void FusedMatchesTensorOps(bool use8Bit)
    {
        const long numel = (1 << 16) * 3 + 1000;   // several chunks and a partial 8-bit block
        var (f, t) = RunBoth(use8Bit, numel, steps: 4);
        double maxRel = 0;
        for (int i = 0; i < f.Length; i++) maxRel = Math.Max(maxRel, Math.Abs(f[i] - t[i]) / Math.Max(1e-3, Math.Abs(t[i])));
        output.WriteLine($"{(use8Bit ? "8-bit" : "fp32")}: max relative difference fused vs tensor ops after 4 steps = {maxRel:E2}");
        // Four updates of ~lr = 1e-3 each: float32 rounding of the update terms stays near 1e-7 of the weight.
        Assert.True(maxRel <= (use8Bit ? 1e-5 : 1e-6), $"max relative difference {maxRel:E2}");
    }

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, true)]
    [InlineData(false, false)]
    [InlineData(true, false)]
    public void GradScaleEqualsScalingTheGradientsFirst(bool use8Bit, bool fusedCpu)
    {
        // Gradient clipping's factor applied inside the update must give bit-for-bit the weights and state of
        // clipping first (grad.mul_(coef)) and stepping after, as the trainer did before.
        using var scope = torch.NewDisposeScope();
        var gen = new torch.Generator(5);
        const long numel = (1 << 16) * 2 + 777;
        var w0 = torch.randn(numel, generator: gen);
        var a = Param(w0); var b = Param(w0);
        var options = new AdamWOptions { WeightDecay = 0.01, Use8Bit = use8Bit };
        using var inside = new AdamW([("w", a)], options) { FusedCpu = fusedCpu };
        using var first = new AdamW([("w", b)], options) { FusedCpu = fusedCpu };
        foreach (float coef in new[] { 0.37f, 1f, 0.0123f })
        {
            var g = torch.randn(numel, generator: gen) * 0.5;
            a.grad = g.clone(); b.grad = g.clone();
            inside.Step(1e-3, coef);
            using (torch.no_grad()) b.grad.mul_(coef);
            first.Step(1e-3);
            Assert.True(Same(a.grad, g));                                 // the stored gradient is left as it was
            inside.ZeroGrad(); first.ZeroGrad();
        }
        Assert.True(Same(a, b), "weights differ");
        var (sa, sb) = (inside.GetState("w")!, first.GetState("w")!);
        if (use8Bit) Assert.True(Same(sa.ExpAvgCodes!, sb.ExpAvgCodes!) && Same(sa.ExpAvgSqCodes!, sb.ExpAvgSqCodes!) && Same(sa.ExpAvgAbsmax!, sb.ExpAvgAbsmax!));
        else Assert.True(Same(sa.ExpAvg!, sb.ExpAvg!) && Same(sa.ExpAvgSq!, sb.ExpAvgSq!));
    }
}
