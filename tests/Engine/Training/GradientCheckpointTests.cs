using DreamBooth.Engine.Training;
using DreamBooth.Engine.Models;
using TorchSharp.Modules;

namespace DreamBooth.Engine.Tests.Training;

[Collection(TrainingSerialCollection.Name)]
public class GradientCheckpointTests(Xunit.Abstractions.ITestOutputHelper output)
{
    sealed class Block : nn.Module<Tensor, Tensor>
    {
        readonly Conv2d conv;
        readonly GroupNorm norm;
        readonly Linear proj;
        public Block(int c) : base("Block")
        {
            conv = nn.Conv2d(c, c, 3, padding: 1);
            norm = nn.GroupNorm(2, c);
            proj = nn.Linear(c, c);
            RegisterComponents();
            using (torch.no_grad()) { norm.weight!.normal_(1.0, 0.1); norm.bias!.normal_(0.0, 0.1); }
        }
        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            var h = nn.functional.silu(norm.forward(conv.forward(x)));
            h = proj.forward(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2);
            return (x + h).MoveToOuterDisposeScope();
        }
    }

    static (Block[] blocks, Tensor x) Make(bool inputRequiresGrad)
    {
        torch.manual_seed(1234);
        var blocks = new[] { new Block(4), new Block(4), new Block(4) };
        var x = torch.randn(2, 4, 6, 6);
        if (inputRequiresGrad) x.requires_grad_(true);
        return (blocks, x);
    }

    static Tensor Loss(Block[] blocks, Tensor x, bool checkpoint)
    {
        var h = x;
        foreach (var b in blocks)
            h = checkpoint ? GradientCheckpoint.Run(xs => [b.forward(xs[0])], h)[0] : b.forward(h);
        return h.pow(2).mean();
    }

    static List<(string, Tensor)> Grads(Block[] blocks) =>
        blocks.SelectMany((b, i) => b.named_parameters().Select(p => ($"{i}.{p.name}", p.parameter.grad!.clone()))).ToList();

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void CheckpointedGradsEqualPlainGrads(bool inputRequiresGrad)
    {
        using var scope = torch.NewDisposeScope();
        var (blocks, x) = Make(inputRequiresGrad);
        var plainLoss = Loss(blocks, x, checkpoint: false);
        plainLoss.backward();
        var plain = Grads(blocks);
        var plainX = inputRequiresGrad ? x.grad!.clone() : null;
        foreach (var b in blocks) b.zero_grad();
        if (inputRequiresGrad) x.grad!.zero_();

        var ckptLoss = Loss(blocks, x, checkpoint: true);
        ckptLoss.backward();
        GradientCheckpoint.ThrowPendingError();
        Assert.True(plainLoss.Equals(ckptLoss));
        var ckpt = Grads(blocks);
        Assert.Equal(plain.Count, ckpt.Count);
        output.WriteLine($"max relative grad error checkpointed vs plain: {plain.Zip(ckpt).Max(q => Fixtures.RelativeError(q.Second.Item2, q.First.Item2)):E2}");
        foreach (var ((name, a), (_, b)) in plain.Zip(ckpt))
            Fixtures.AssertRelative(b, a, 1e-5, name);
        if (inputRequiresGrad) Fixtures.AssertRelative(x.grad!, plainX!, 1e-5, "input grad");
    }

    [Fact]
    public void MultipleOutputsAndNoGradMode()
    {
        using var scope = torch.NewDisposeScope();
        var w = torch.randn(3, 3).requires_grad_(true);
        var x = torch.randn(5, 3).requires_grad_(true);
        Func<Tensor[], Tensor[]> fn = xs => [xs[0].matmul(w).tanh(), (xs[0] * 2).sum(1)];
        Func<Func<Tensor[], Tensor[]>, Tensor[], Tensor[]> runner = GradientCheckpoint.Run;   // injectable CheckpointRunner shape
        var outs = runner(fn, [x]);
        (outs[0].sum() + outs[1].pow(2).sum()).backward();
        GradientCheckpoint.ThrowPendingError();
        var gw = w.grad!.clone(); var gx = x.grad!.clone();
        w.grad!.zero_(); x.grad!.zero_();
        var plain = fn([x]);
        (plain[0].sum() + plain[1].pow(2).sum()).backward();
        Assert.True(gw.allclose(w.grad!, rtol: 1e-6, atol: 1e-7));
        Assert.True(gx.allclose(x.grad!, rtol: 1e-6, atol: 1e-7));

        using (torch.no_grad())
        {
            var o = GradientCheckpoint.Run(fn, x);
            Assert.False(o[0].requires_grad);
            Assert.True(o[0].allclose(plain[0]));
        }
    }

    [Fact]
    public void ExceptionInBackwardIsStashedAndRethrown()
    {
        using var scope = torch.NewDisposeScope();
        var w = torch.randn(3, 3).requires_grad_(true);
        var x = torch.randn(2, 3).requires_grad_(true);
        int calls = 0;
        var outs = GradientCheckpoint.Run(xs =>
        {
            if (++calls == 2) throw new ArithmeticException("boom in recompute");
            return [xs[0].matmul(w)];
        }, x);
        outs[0].sum().backward();   // the recompute throws inside the native callback; the process must survive
        Assert.True(GradientCheckpoint.HasPendingError);
        var e = Assert.Throws<InvalidOperationException>(GradientCheckpoint.ThrowPendingError);
        Assert.IsType<ArithmeticException>(e.InnerException);
        Assert.Contains("boom in recompute", e.Message);
        Assert.False(GradientCheckpoint.HasPendingError);
        GradientCheckpoint.ThrowPendingError();   // cleared: nothing more to throw
    }

    [Fact]
    public void HandedBackGradsDoNotLeak()
    {
        var w = torch.randn(8, 8).requires_grad_(true);
        void Step()
        {
            using var scope = torch.NewDisposeScope();
            var x = torch.randn(4, 8).requires_grad_(true);
            var h = GradientCheckpoint.Run(xs => [xs[0].matmul(w).relu()], x)[0];
            h = GradientCheckpoint.Run(xs => [xs[0].matmul(w).tanh()], h)[0];
            h.sum().backward();
            GradientCheckpoint.ThrowPendingError();
        }
        Step();   // warm-up creates w.grad
        GC.Collect(); GC.WaitForPendingFinalizers();   // other tests' garbage tensors must not be finalized while counting
        long before = torch.Tensor.TotalCount;
        for (int i = 0; i < 20; i++) Step();
        Assert.Equal(before, torch.Tensor.TotalCount);
        w.grad!.Dispose(); w.Dispose();
    }

    /// <summary>
    /// Two threads training at once (two runspaces, two trainings in one process): each thread's backward frees only the
    /// gradients its own custom functions handed to libtorch, and an exception in one thread's recompute is rethrown on
    /// that thread alone. With one process-wide stash, one thread freed gradients the other had not yet given to libtorch.
    /// </summary>
    [Fact]
    public void ConcurrentBackwards_KeepTheirHandedBackGradientsAndErrorsApart()
    {
        // Each thread its own parameters (same values): checkpointed blocks around fp32-arithmetic Linear layers, so both
        // kinds of custom function hand gradients back.
        (Tensor W, Linear Linear) Parameters()
        {
            using var _ = torch.NewDisposeScope();
            var g = new torch.Generator(11);
            var w = torch.randn(new long[] { 16, 16 }, generator: g).requires_grad_(true);
            var linear = nn.Linear(16, 16);
            using (torch.no_grad()) foreach (var p in linear.parameters()) p.copy_(torch.randn(p.shape, generator: g) * 0.2);
            return (w.MoveToOuterDisposeScope(), linear);
        }
        var x = torch.randn(new long[] { 8, 16 }, generator: new torch.Generator(12));
        Tensor[] Grads(Tensor w, Linear linear, bool failing, int step)
        {
            using var scope = torch.NewDisposeScope();
            using var emulate = LowPrecisionOnCpu.OverrideEmulation(true);
            w.grad?.zero_(); foreach (var p in linear.parameters()) p.grad?.zero_();
            var h = x;
            for (int block = 0; block < 6; block++)
            {
                bool fail = failing && block == 3;
                h = GradientCheckpoint.Run(xs =>
                {
                    if (fail && torch.is_grad_enabled()) throw new ArithmeticException($"boom at step {step}");
                    using var _ = MixedPrecision.Autocast(ScalarType.BFloat16);
                    return [MixedPrecision.Forward(linear, xs[0].matmul(w).tanh()).to(ScalarType.Float32)];
                }, h)[0];
            }
            using (MixedPrecision.Autocast(ScalarType.BFloat16)) h = MixedPrecision.Forward(linear, h);
            h.to(ScalarType.Float32).pow(2).mean().backward();
            return new[] { w.grad!, linear.weight!.grad!, linear.bias!.grad! }.Select(t => t.clone().MoveToOuterDisposeScope()).ToArray();
        }
        var (w0, linear0) = Parameters();
        var reference = Grads(w0, linear0, false, 0);
        GradientCheckpoint.ThrowPendingError();

        var errors = new System.Collections.Concurrent.ConcurrentBag<string>();
        void Worker(bool failing)
        {
            try
            {
                var (w, linear) = Parameters();
                for (int step = 0; step < 40; step++)
                {
                    var grads = Grads(w, linear, failing, step);
                    try
                    {
                        GradientCheckpoint.ThrowPendingError();
                        if (failing) errors.Add($"failing thread, step {step}: its exception was not rethrown on its thread");
                        else if (!grads.Zip(reference).All(p => p.First.Equals(p.Second)))
                            errors.Add($"clean thread, step {step}: gradients differ from the single-threaded run");
                    }
                    catch (InvalidOperationException e) when (failing && e.Message.Contains($"boom at step {step}")) { }
                    finally { foreach (var t in grads) t.Dispose(); }
                }
            }
            catch (Exception e) { errors.Add($"{(failing ? "failing" : "clean")} thread: {e}"); }
        }
        var threads = new[] { new Thread(() => Worker(false)), new Thread(() => Worker(true)) };
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        Assert.True(errors.IsEmpty, string.Join("\n", errors));
    }
}
