using DreamBooth.Engine.Training;
using TorchSharp.Modules;
using Xunit.Abstractions;
using AdamW = DreamBooth.Engine.Training.AdamW;

namespace DreamBooth.Engine.Tests.Training;

public class AdamW8BitTests(ITestOutputHelper output)
{
    [Fact]
    public void DynamicMapsMatchBitsandbytesConstruction()
    {
        foreach (bool signed in new[] { true, false })
        {
            var code = BlockwiseQuantization.DynamicMap(signed);
            Assert.Equal(256, code.Length);
            Assert.True(code.Zip(code.Skip(1)).All(q => q.First < q.Second), "strictly increasing");
            Assert.Equal(1.0f, code[255]);
            Assert.Contains(0.0f, code);
            // Smallest exponent (1e-6): signed has 2 boundaries {0.1, 1} → mean 0.55; unsigned 3 {0.1, .55, 1} → .325, .775.
            // Largest exponent (1e0): signed 65 boundaries → top mean 1 − 0.9/128; unsigned 129 → 1 − 0.9/256.
            // As in bitsandbytes, boundaries and means are float32 (torch.linspace), the 10^e scaling is double.
            static float Scaled(float mean) => (float)(Math.Pow(10, -6) * mean);
            float mid = 1f - (1f - 0.1f) / 2f;   // libtorch's linspace fills the upper half from the end
            if (signed)
            {
                Assert.Equal(-(1 - 0.9 / 128), code[0], 6);
                Assert.Equal(127, code.Count(c => c < 0));
                Assert.Equal(Scaled((0.1f + 1f) / 2f), code.Where(c => c > 0).Min());
            }
            else
            {
                Assert.Equal(0.0f, code[0]);
                Assert.Equal(Scaled((0.1f + mid) / 2f), code[1]);
                Assert.Equal(Scaled((mid + 1f) / 2f), code[2]);
                Assert.Equal(1 - 0.9 / 256, code[254], 6);
            }
        }
    }

    [Fact]
    public void QuantizeRoundTripErrorIsWithinHalfACodeGapPerBlock()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(5);
        foreach (bool signed in new[] { true, false })
        {
            var codeArr = BlockwiseQuantization.DynamicMap(signed);
            var code = torch.tensor(codeArr);
            // Values spanning several orders of magnitude, odd length (partial last block), one all-zero block.
            var x = torch.randn(1000) * torch.pow(10.0, torch.rand(1000) * 4 - 3);
            if (!signed) x = x.abs();
            x[torch.TensorIndex.Slice(256, 512)] = torch.zeros(256);
            var (codes, absmax) = BlockwiseQuantization.Quantize(x, code);
            Assert.Equal(ScalarType.Byte, codes.dtype);
            Assert.Equal(new long[] { 4 }, absmax.shape);
            Assert.Equal(1.0f, absmax[1].item<float>());   // all-zero block
            var back = BlockwiseQuantization.Dequantize(codes, absmax, code);

            // Bound derived from the code itself: nearest rounding errs by at most half the widest gap, or by the
            // distance from ±1 to the outermost code.
            double halfGap = codeArr.Zip(codeArr.Skip(1)).Max(q => (double)q.Second - q.First) / 2;
            double edge = Math.Max(1 - codeArr[255], signed ? 1 + codeArr[0] : 0);
            double bound = Math.Max(halfGap, edge);
            var perBlock = torch.nn.functional.pad((back - x).abs(), [0, 24]).view(4, 256).amax([1]) / absmax;
            double worst = perBlock.max().item<float>();
            output.WriteLine($"{(signed ? "signed" : "unsigned")}: worst |x − dq(q(x))| / absmax = {worst:E3}, bound {bound:E3}");
            Assert.True(worst <= bound * (1 + 1e-5), $"round-trip error {worst} exceeds {bound}");
            Assert.True(back[torch.TensorIndex.Slice(256, 512)].Equals(torch.zeros(256)));

            // Exactly nearest: compare with brute-force argmin over the code (ties → lower index, like torch.argmin).
            var scaled = torch.nn.functional.pad(x, [0, 24]).view(4, 256) / absmax.view(4, 1);
            var brute = (scaled.reshape(-1, 1) - code.view(1, -1)).abs().argmin(1).narrow(0, 0, 1000).to(ScalarType.Byte);
            Assert.True(brute.Equals(codes));
        }
    }

    static Parameter Param(Tensor t) => new(t.clone(), requires_grad: true);

    [Fact]
    public void EightBitTracksFloat32OnLeastSquaresWithQuarterOfTheStateMemory()
    {
        using var scope = torch.NewDisposeScope();
        var gen = new torch.Generator(21);   // own generator: parallel tests share the default one
        // Least squares: min ‖X Wᵀ + b − Y‖², W [96, 64] (6144 ≥ 4096 → 8-bit), b [96] (fp32 state in both).
        var X = torch.randn(256, 64, generator: gen); var Wtrue = torch.randn(96, 64, generator: gen) * 0.3;
        var Y = X.matmul(Wtrue.t()) + 0.01 * torch.randn(256, 96, generator: gen);
        var W0 = torch.randn(96, 64, generator: gen) * 0.1; var b0 = torch.zeros(96);
        double loss0 = (X.matmul(W0.t()) + b0 - Y).pow(2).mean().item<float>();
        Parameter[] Fit(bool eight, out AdamW opt, out double loss)
        {
            var ps = new[] { Param(W0), Param(b0) };
            opt = new AdamW([("w", ps[0]), ("b", ps[1])], new AdamWOptions { Use8Bit = eight });
            for (int step = 0; step < 200; step++)
            {
                using var s = torch.NewDisposeScope();
                var l = (X.matmul(ps[0].t()) + ps[1] - Y).pow(2).mean();
                l.backward();
                opt.Step(1e-2);
                opt.ZeroGrad();
            }
            using (torch.no_grad()) loss = (X.matmul(ps[0].t()) + ps[1] - Y).pow(2).mean().item<float>();
            return ps;
        }
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var p32 = Fit(false, out var o32, out var loss32);
        var t32 = sw.Elapsed.TotalSeconds; sw.Restart();
        var p8 = Fit(true, out var o8, out var loss8);
        output.WriteLine($"200 steps: fp32 {t32:F2} s, 8-bit {sw.Elapsed.TotalSeconds:F2} s, threads {torch.get_num_threads()}");
        using (o32) using (o8)
        {
            double divergence = Fixtures.RelativeError(p8[0], p32[0]);
            double travelled = Fixtures.RelativeError(p32[0], W0);
            long n = 96 * 64;
            double bytes8 = o8.GetState("w")!.Bytes, bytes32 = o32.GetState("w")!.Bytes;
            output.WriteLine($"after 200 steps: loss (initial {loss0:E3}) fp32 {loss32:E4}, 8-bit {loss8:E4}; ‖W8 − W32‖/‖W32‖ = {divergence:E3} " +
                             $"(‖W32 − W0‖/‖W0‖ = {travelled:E3}); state bytes/param 8-bit {bytes8 / n:F4}, fp32 {bytes32 / n:F4}, ratio {bytes8 / bytes32:F4}");
            Assert.True(o8.GetState("w")!.Is8Bit);
            Assert.False(o8.GetState("b")!.Is8Bit);
            Assert.True(divergence <= 1e-2, $"8-bit W diverged from fp32 W by {divergence:E3}");
            // Both fits converge: the loss falls by more than 1000× from the start in both runs.
            Assert.True(loss32 < 1e-3 * loss0 && loss8 < 1e-3 * loss0, $"loss 8-bit {loss8} / fp32 {loss32} vs initial {loss0}");
            Assert.True(bytes8 / bytes32 <= 0.3, $"8-bit state is {bytes8 / bytes32:F3}× fp32");
            Assert.Equal(2 * n + 2 * 4 * BlockwiseQuantization.BlockCount(n), (long)bytes8);
        }
    }
}
