using DreamBooth.Engine.Training;
using TorchSharp.Modules;
using AdamW = DreamBooth.Engine.Training.AdamW;

namespace DreamBooth.Engine.Tests.Training;

public class AdamWTests(Xunit.Abstractions.ITestOutputHelper output)
{
    static Parameter Param(Tensor t) => new(t.clone(), requires_grad: true);

    static void SetGrad(Parameter p, Tensor g)
    {
        using var old = p.grad;
        p.grad = g.clone();
    }

    [Fact]
    public void TwoStepsMatchHandComputedAdamW()
    {
        using var scope = torch.NewDisposeScope();
        double[] p0 = [1.0, -2.0, 0.5, 0.0];
        double[][] grads = [[0.1, -0.2, 0.3, 0.0], [-0.05, 0.4, 0.0, 1e-3]];
        double lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01;

        var p = Param(torch.tensor(p0.Select(d => (float)d).ToArray()));
        using var opt = new AdamW([("w", p)], new AdamWOptions { WeightDecay = wd });
        var expect = (double[])p0.Clone();
        var m = new double[4]; var v = new double[4];
        for (int t = 1; t <= 2; t++)
        {
            SetGrad(p, torch.tensor(grads[t - 1].Select(d => (float)d).ToArray()));
            opt.Step(lr);
            for (int i = 0; i < 4; i++)
            {
                double g = (float)grads[t - 1][i];
                expect[i] *= 1 - lr * wd;
                m[i] = b1 * m[i] + (1 - b1) * g;
                v[i] = b2 * v[i] + (1 - b2) * g * g;
                expect[i] -= lr / (1 - Math.Pow(b1, t)) * m[i] / (Math.Sqrt(v[i]) / Math.Sqrt(1 - Math.Pow(b2, t)) + eps);
            }
        }
        var actual = p.data<float>().ToArray();
        output.WriteLine("max |ours − float64 hand AdamW| = " + Enumerable.Range(0, 4).Max(i => Math.Abs(actual[i] - expect[i])).ToString("E2"));
        for (int i = 0; i < 4; i++)
            Assert.True(Math.Abs(actual[i] - expect[i]) <= 2e-7 * Math.Max(1, Math.Abs(expect[i])), $"element {i}: {actual[i]} vs {expect[i]}");
        Assert.Equal(2, opt.GetState("w")!.Step);
    }

    /// <summary>
    /// Per-parameter learning-rate factors (a second parameter group, the text encoder's rate) update each parameter
    /// exactly as an optimizer of its own stepped at lr × factor: fp32 and 8-bit moments, fused and tensor-op paths.
    /// </summary>
    [Theory]
    [InlineData(false, true)]
    [InlineData(false, false)]
    [InlineData(true, true)]
    [InlineData(true, false)]
    public void LearningRateFactors_EqualASeparateOptimizerAtThatRate(bool use8Bit, bool fused)
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(3);
        var a0 = torch.randn(64, 80); var b0 = torch.randn(5000);
        var grads = Enumerable.Range(0, 4).Select(_ => (torch.randn(64, 80), torch.randn(5000))).ToList();
        var options = new AdamWOptions { WeightDecay = 0.01, Use8Bit = use8Bit, Min8BitSize = 1 };
        var (a, b) = (Param(a0), Param(b0));
        var (a2, b2) = (Param(a0), Param(b0));
        using var grouped = new AdamW([("a", a), ("b", b)], options) { FusedCpu = fused, LearningRateFactors = [1.0, 0.25] };
        using var aloneA = new AdamW([("a", a2)], options) { FusedCpu = fused };
        using var aloneB = new AdamW([("b", b2)], options) { FusedCpu = fused };
        foreach (var (ga, gb) in grads)
        {
            SetGrad(a, ga); SetGrad(b, gb); SetGrad(a2, ga); SetGrad(b2, gb);
            grouped.Step(1e-3);
            aloneA.Step(1e-3);
            aloneB.Step(1e-3 * 0.25);
        }
        Assert.True(a.Equals(a2), "the parameter at factor 1 differs");
        Assert.True(b.Equals(b2), "the parameter at factor 0.25 differs from its own optimizer at lr × 0.25");
        Assert.False(b.Equals(Param(b0)));
        Assert.Throws<ArgumentException>(() => grouped.LearningRateFactors = [1.0]);
        Assert.Throws<ArgumentException>(() => grouped.LearningRateFactors = [1.0, 0.0]);
    }

    [Fact]
    public void MatchesTorchSharpAdamW()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(7);
        var w0 = torch.randn(16, 9); var b0 = torch.randn(9);
        var gs = Enumerable.Range(0, 6).Select(_ => (torch.randn(16, 9), torch.randn(9))).ToList();
        var (w1, b1) = (Param(w0), Param(b0));
        var (w2, b2) = (Param(w0), Param(b0));
        using var ours = new AdamW([("w", w1), ("b", b1)], new AdamWOptions { WeightDecay = 0.05 });
        var theirs = torch.optim.AdamW([w2, b2], lr: 3e-3, weight_decay: 0.05);
        foreach (var (gw, gb) in gs)
        {
            SetGrad(w1, gw); SetGrad(b1, gb); SetGrad(w2, gw); SetGrad(b2, gb);
            ours.Step(3e-3);
            theirs.step();
        }
        double errW = Fixtures.MaxAbs(w1, w2), errB = Fixtures.MaxAbs(b1, b2);
        output.WriteLine($"max |ours − TorchSharp AdamW| after 6 steps: w {errW:E2}, b {errB:E2}");
        Assert.True(errW <= 1e-7 && errB <= 1e-7, $"max |ours - TorchSharp| w {errW:E2}, b {errB:E2}");
        Assert.True((w1 - w0).abs().max().item<float>() > 1e-3);   // it actually moved
    }

    [Fact]
    public void SkipsParametersWithoutGradAndZeroGradReleasesGrads()
    {
        using var scope = torch.NewDisposeScope();
        var a = Param(torch.ones(3)); var b = Param(torch.ones(3));
        using var opt = new AdamW([("a", a), ("b", b)]);
        SetGrad(a, torch.ones(3));
        opt.Step(0.1);
        Assert.NotNull(opt.GetState("a"));
        Assert.Null(opt.GetState("b"));
        Assert.True(b.Equals(torch.ones(3)));
        Assert.False(a.Equals(torch.ones(3)));

        opt.ZeroGrad(setToNone: false);
        using (var g = a.grad) Assert.True(g!.Equals(torch.zeros(3)));
        opt.ZeroGrad();
        Assert.Null(a.grad);
        Assert.Null(b.grad);
    }

    [Fact]
    public void Float64ParameterGoesThroughTheCopyBackPathBitIdentically()
    {
        // A non-float32 parameter is updated like offloaded state: copied to float32 on the state device, updated,
        // copied back. With float32-representable values that must equal the in-place float32 update exactly.
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(3);
        var w0 = torch.randn(5, 4);
        var p32 = Param(w0); var p64 = Param(w0.to(ScalarType.Float64));
        using var o32 = new AdamW([("w", p32)]);
        using var o64 = new AdamW([("w", p64)], new AdamWOptions { StateDevice = torch.CPU });
        for (int i = 0; i < 3; i++)
        {
            var g = torch.randn(5, 4);
            SetGrad(p32, g); SetGrad(p64, g.to(ScalarType.Float64));
            o32.Step(1e-2); o64.Step(1e-2);
        }
        Assert.Equal(ScalarType.Float64, p64.dtype);
        Assert.True(p32.Equals(p64.to(ScalarType.Float32)));
        Assert.Equal(ScalarType.Float32, o64.GetState("w")!.ExpAvg!.dtype);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void OffloadedMasterWeights_GiveTheSameWeightsAsTheInPlaceUpdate(bool use8Bit)
    {
        // Offloaded state keeps a float32 copy of each parameter on the state's device (DeepSpeed's host master
        // weights) instead of reading the parameter back every step. The hook runs that path on CPU parameters.
        using var scope = torch.NewDisposeScope();
        var (ps, grads) = Problem(5);
        var names = new[] { "down.weight", "down.bias", "conv.weight" };
        var options = new AdamWOptions { Use8Bit = use8Bit, WeightDecay = 0.02 };
        var masters = ps.Select(p => Param(p)).ToArray();
        var readBack = ps.Select(p => Param(p)).ToArray();
        using var inPlace = new AdamW(names.Zip(ps).ToList(), options);
        using var withMasters = new AdamW(names.Zip(masters).ToList(), options with { StateDevice = torch.CPU }) { TreatParametersAsRemote = true };
        using var withoutMasters = new AdamW(names.Zip(readBack).ToList(), options with { StateDevice = torch.CPU, HostMasterWeights = false }) { TreatParametersAsRemote = true };
        Run(inPlace, ps, grads, 0);
        Run(withMasters, masters, grads, 0);
        Run(withoutMasters, readBack, grads, 0);
        for (int i = 0; i < ps.Length; i++)
        {
            Assert.True(ps[i].Equals(masters[i]), $"{names[i]} with master copies: max {Fixtures.MaxAbs(masters[i], ps[i]):E2}");
            Assert.True(ps[i].Equals(readBack[i]), $"{names[i]} read back each step: max {Fixtures.MaxAbs(readBack[i], ps[i]):E2}");
            var master = withMasters.GetState(names[i])!.Master!;
            Assert.True(master.Equals(masters[i]), $"{names[i]}: the master copy is not the parameter's value");
            using (torch.no_grad())
            {
                // A copy, not the parameter itself: writing it leaves the parameter alone.
                var before = masters[i].clone();
                master.add_(1f);
                Assert.True(masters[i].Equals(before), $"{names[i]}: the master copy shares the parameter's memory");
                master.copy_(before);
            }
        }
        Assert.Equal(ps.Sum(p => p.numel() * 4), withMasters.MasterBytes);
        Assert.Equal(0, withoutMasters.MasterBytes);
        Assert.Equal(0, inPlace.MasterBytes);
    }

    [Fact]
    public void MasterWeights_AreTakenAgainAfterDropAndAfterLoadState()
    {
        using var scope = torch.NewDisposeScope();
        var (ps, grads) = Problem(4);
        var names = new[] { "down.weight", "down.bias", "conv.weight" };
        var reference = ps.Select(p => Param(p)).ToArray();
        using var opt = new AdamW(names.Zip(ps).ToList(), new AdamWOptions { StateDevice = torch.CPU }) { TreatParametersAsRemote = true };
        using var plain = new AdamW(names.Zip(reference).ToList());
        Run(opt, ps, grads.Take(2), 0);
        Run(plain, reference, grads.Take(2), 0);

        // Someone else writes the parameters (as a weight load would): after DropHostMasterWeights the next update
        // starts from the new values, not from the stale copies.
        using (torch.no_grad())
            for (int i = 0; i < ps.Length; i++) { ps[i].mul_(0.5f); reference[i].mul_(0.5f); }
        opt.DropHostMasterWeights();
        Assert.Equal(0, opt.MasterBytes);
        Run(opt, ps, grads.Skip(2).Take(1), 2);
        Run(plain, reference, grads.Skip(2).Take(1), 2);
        for (int i = 0; i < ps.Length; i++) Assert.True(ps[i].Equals(reference[i]), $"{names[i]} after the drop");

        var dir = Directory.CreateTempSubdirectory("db-adamw-master-").FullName;
        try
        {
            var path = Path.Combine(dir, "optimizer.safetensors");
            opt.SaveState(path);
            using (var file = DreamBooth.Engine.IO.SafetensorsFile.Open(path))
                Assert.DoesNotContain(file.Keys, k => k.Contains("master", StringComparison.OrdinalIgnoreCase));
            using (torch.no_grad())
                for (int i = 0; i < ps.Length; i++) { ps[i].add_(1f); reference[i].add_(1f); }
            opt.LoadState(path);   // replaces the state, copies included
            Assert.Equal(0, opt.MasterBytes);
            Run(opt, ps, grads.Skip(3), 3);
            Run(plain, reference, grads.Skip(3), 3);
            for (int i = 0; i < ps.Length; i++) Assert.True(ps[i].Equals(reference[i]), $"{names[i]} after LoadState");
        }
        finally { Directory.Delete(dir, true); }
    }

    static (Parameter[] ps, List<Tensor[]> grads) Problem(int steps)
    {
        torch.manual_seed(11);
        var ps = new[] { Param(torch.randn(80, 64)), Param(torch.randn(64)), Param(torch.randn(3, 3)) };   // 5120 ≥ 4096: 8-bit
        var grads = Enumerable.Range(0, steps).Select(_ => ps.Select(p => torch.randn(p.shape)).ToArray()).ToList();
        return (ps, grads);
    }

    static void Run(AdamW opt, Parameter[] ps, IEnumerable<Tensor[]> grads, int firstStep)
    {
        int step = firstStep;
        var schedule = LearningRateSchedules.Create("cosine", 2, 10);
        foreach (var gs in grads)
        {
            for (int i = 0; i < ps.Length; i++) SetGrad(ps[i], gs[i]);
            opt.Step(1e-2 * schedule(step++));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SaveLoadResumeIsBitIdentical(bool use8Bit)
    {
        using var scope = torch.NewDisposeScope();
        const int N = 3, M = 4;
        var (ps, grads) = Problem(N + M);
        var options = new AdamWOptions { Use8Bit = use8Bit, WeightDecay = 0.02 };
        var copies = ps.Select(p => Param(p)).ToArray();
        var names = new[] { "down.weight", "down.bias", "conv.weight" };

        using var straight = new AdamW(names.Zip(ps).ToList(), options);
        Run(straight, ps, grads, 0);

        var dir = Directory.CreateTempSubdirectory("db-adamw-").FullName;
        try
        {
            var path = Path.Combine(dir, "optimizer.safetensors");
            using (var first = new AdamW(names.Zip(copies).ToList(), options))
            {
                Run(first, copies, grads.Take(N), 0);
                first.SaveState(path);
            }
            using var resumed = new AdamW(names.Zip(copies).ToList(), options with { WeightDecay = 0.5 });
            resumed.LoadState(path);
            Assert.Equal(0.02, resumed.WeightDecay);   // hyperparameters come from the file, as in PyTorch
            Assert.Equal(use8Bit, resumed.GetState("down.weight")!.Is8Bit);
            Assert.False(resumed.GetState("down.bias")!.Is8Bit);
            Assert.Equal(N, resumed.GetState("conv.weight")!.Step);
            Run(resumed, copies, grads.Skip(N), N);
            for (int i = 0; i < ps.Length; i++)
                Assert.True(ps[i].Equals(copies[i]), $"{names[i]} differs after resume: max {Fixtures.MaxAbs(copies[i], ps[i]):E2}");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void LoadStateRejectsMismatchedNamesShapesAndKinds()
    {
        using var scope = torch.NewDisposeScope();
        var dir = Directory.CreateTempSubdirectory("db-adamw-").FullName;
        try
        {
            var path = Path.Combine(dir, "opt.safetensors");
            var a = Param(torch.randn(64, 80)); var b = Param(torch.randn(4));
            using (var opt = new AdamW([("a", a), ("b", b)]))
            {
                SetGrad(a, torch.ones(64, 80)); SetGrad(b, torch.ones(4));
                opt.Step(1e-3);
                opt.SaveState(path);
            }
            using var renamed = new AdamW([("a", a), ("c", b)]);
            var e1 = Assert.Throws<InvalidDataException>(() => renamed.LoadState(path));
            Assert.Contains("'b' is not a parameter", e1.Message);

            using var reshaped = new AdamW([("a", Param(torch.randn(80, 64))), ("b", b)]);
            var e2 = Assert.Throws<InvalidDataException>(() => reshaped.LoadState(path));
            Assert.Contains("'a.exp_avg' is F32 [64, 80], expected F32 [80, 64]", e2.Message);

            using var eightBit = new AdamW([("a", a), ("b", b)], new AdamWOptions { Use8Bit = true });
            var e3 = Assert.Throws<InvalidDataException>(() => eightBit.LoadState(path));
            Assert.Contains("'a' was saved with float32 state but this optimizer keeps 8-bit state", e3.Message);
            Assert.Null(eightBit.GetState("a"));   // failed loads change nothing
        }
        finally { Directory.Delete(dir, true); }
    }
}
