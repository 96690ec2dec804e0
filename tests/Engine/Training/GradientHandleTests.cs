using DreamBooth.Engine.Training;
using Parameter = TorchSharp.Modules.Parameter;
using AdamW = DreamBooth.Engine.Training.AdamW;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>Tensor.TotalCount is process-wide, so these run with no other test in parallel.</summary>
[CollectionDefinition(nameof(GradientHandleTests), DisableParallelization = true)]
public sealed class GradientHandleCollection { }

/// <summary>
/// Every p.grad is a fresh handle that keeps the gradient's storage alive until it is disposed. A step (clip, update,
/// release) must dispose all it takes, or gradients released with set-to-none stay resident into the next backward:
/// the 12GB recipe peaked 3.2 GB higher from its second step on when clipping leaked them.
/// </summary>
[Collection(nameof(GradientHandleTests))]
public sealed class GradientHandleTests
{
    static (Parameter[] Params, AdamW Optimizer) Setup(bool use8Bit)
    {
        torch.manual_seed(0);
        var ps = new[] { new Parameter(torch.randn(4096, 64)), new Parameter(torch.randn(300)) };
        var opt = new AdamW(ps.Select((p, i) => ($"p{i}", p)).ToList(), new AdamWOptions { WeightDecay = 1e-2, Use8Bit = use8Bit });
        return (ps, opt);
    }

    static void Backward(Parameter[] ps)
    {
        using var scope = torch.NewDisposeScope();
        (ps[0].pow(2).sum() * 1e3 + ps[1].sum()).backward();   // large enough that clipping applies
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void AStepLeavesNoGradientHandleBehind(bool use8Bit, bool clipInPlace)
    {
        var (ps, opt) = Setup(use8Bit);
        using var _ = opt;
        for (int step = 0; step < 2; step++)   // the first step creates optimizer state
        {
            Backward(ps);
            GC.Collect(); GC.WaitForPendingFinalizers();   // other garbage must not be finalized while counting
            long before = Tensor.TotalCount;
            if (clipInPlace)
            {
                GradientClipping.ClipGradNorm(ps, 1.0);
                opt.Step(1e-3);
            }
            else
            {
                var (norm, coefficient) = GradientClipping.ClipCoefficient(ps, 1.0);
                Assert.True(coefficient < 1f, $"norm {norm}: clipping should apply");
                opt.Step(1e-3, coefficient);
            }
            opt.ZeroGrad(setToNone: true);
            if (step == 1) Assert.Equal(before, Tensor.TotalCount);
        }
        Assert.All(ps, p => Assert.Null(p.grad));
        foreach (var p in ps) p.Dispose();
    }
}
