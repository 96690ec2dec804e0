using DreamBooth.Engine.Models;
using DreamBooth.Engine.Models.Autoencoders;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Tests.Models;

/// <summary>
/// fp16/bf16 on a CPU without kernels for them (<see cref="LowPrecisionOnCpu.Emulates"/>): convolutions, Linear layers
/// and attention compute in fp32 on the values as they come (fp32 ones unrounded) and round the result. Each case
/// checks that the emulated result is that fp32 result correctly rounded (half an ulp, plus fp32 accumulation error
/// near 0), and that it is at least as close to it as libtorch's own low-precision kernel (run too, on small shapes:
/// its reference kernels are slow but fine there). Those kernels round more (fp32 inputs under autocast, a Linear's
/// product before its bias, attention's probabilities before they multiply V, as GPU flash attention does); where they
/// round only once on the same inputs (a convolution on low-precision inputs) both agree exactly.
/// </summary>
public class LowPrecisionEmulationTests(ITestOutputHelper log)
{
    static (Tensor Emulated, Tensor Native, Tensor Fp32) Three(Func<Tensor> run, Func<Tensor> fp32)
    {
        using var scope = torch.NewDisposeScope();
        Tensor emulated, native;
        using (LowPrecisionOnCpu.OverrideEmulation(true)) emulated = run().MoveToOuterDisposeScope();
        using (LowPrecisionOnCpu.OverrideEmulation(false)) native = run().MoveToOuterDisposeScope();
        return (emulated, native, fp32().MoveToOuterDisposeScope());
    }

    /// <summary>
    /// <paramref name="emulated"/> is <paramref name="fp32"/> rounded to nearest in <paramref name="dtype"/>, and no
    /// further from it on average than <paramref name="native"/>.
    /// </summary>
    void AssertCorrectlyRounded(Tensor emulated, Tensor native, Tensor fp32, ScalarType dtype, string what)
    {
        using var scope = torch.NewDisposeScope();
        Assert.Equal(dtype, emulated.dtype);
        Assert.Equal(dtype, native.dtype);
        Assert.Equal(ScalarType.Float32, fp32.dtype);
        var e = emulated.to(ScalarType.Float32);
        var n = native.to(ScalarType.Float32);
        double ulp = dtype == ScalarType.BFloat16 ? Math.Pow(2, -7) : Math.Pow(2, -10);   // relative, stored mantissa bits
        double floor = 1e-6 * fp32.abs().max().item<float>();
        var halfUlp = fp32.abs() * (ulp / 2) + floor;
        double excess = ((e - fp32).abs() - halfUlp).max().item<float>();
        double emulatedError = (e - fp32).abs().mean().item<float>(), nativeError = (n - fp32).abs().mean().item<float>();
        log.WriteLine($"{what} {dtype}: mean |error| emulated {emulatedError:E3}, native {nativeError:E3}; " +
            $"{(e != n).to(ScalarType.Float32).mean().item<float>():P1} of values differ; worst excess over half an ulp {excess:E2}");
        Assert.True(excess <= 0, $"{what}: the emulated result is not the fp32 result correctly rounded ({excess:E2} over half an ulp)");
        Assert.True(emulatedError <= nativeError, $"{what}: emulated error {emulatedError:E3} above the native kernel's {nativeError:E3}");
    }

    /// <summary>The tensor's values rounded to <paramref name="dt"/>, in fp32.</summary>
    static Tensor Rounded(Tensor t, ScalarType dt) => t.to(dt).to(ScalarType.Float32);

    public static TheoryData<string> Precisions => new() { "bf16", "fp16" };

    [Theory]
    [MemberData(nameof(Precisions))]
    public void Linear_UnderAutocast_IsTheFp32ResultCorrectlyRounded(string precision)
    {
        var dt = MixedPrecision.Parse(precision)!.Value;
        using var scope = torch.NewDisposeScope();
        var g = new Generator(1);
        foreach (bool bias in new[] { true, false })
        {
            var linear = nn.Linear(96, 40, hasBias: bias);
            var x = torch.randn(new long[] { 2, 33, 96 }, generator: g);
            var (emulated, native, fp32) = Three(
                () => { using var _ = MixedPrecision.Autocast(dt); return MixedPrecision.Forward(linear, x); },
                () => nn.functional.linear(x, linear.weight!, linear.bias));
            AssertCorrectlyRounded(emulated, native, fp32, dt, bias ? "linear" : "linear without bias");
        }
    }

    [Theory]
    [MemberData(nameof(Precisions))]
    public void Conv2d_UnderAutocastAndHeldInLowPrecision_IsTheFp32ResultCorrectlyRounded(string precision)
    {
        var dt = MixedPrecision.Parse(precision)!.Value;
        using var scope = torch.NewDisposeScope();
        var g = new Generator(2);
        foreach (var (stride, padding) in new[] { (1L, 1L), (2L, 1L) })
        {
            var conv = DreamBooth.Engine.Models.Layers.Conv2d(12, 16, 3, stride, padding);
            var x = torch.randn(new long[] { 2, 12, 10, 10 }, generator: g);
            var (emulated, native, fp32) = Three(
                () => { using var _ = MixedPrecision.Autocast(dt); return MixedPrecision.Forward(conv, x); },
                () => nn.functional.conv2d(x, conv.weight!, conv.bias, conv.stride, conv.padding));
            AssertCorrectlyRounded(emulated, native, fp32, dt, $"conv stride {stride} under autocast");

            // A model held in the low precision (inference, frozen VAE): no autocast scope, weights and input in dt.
            conv.to(dt);
            var xl = x.to(dt);
            var (emulatedHeld, nativeHeld, fp32Held) = Three(() => MixedPrecision.Forward(conv, xl),
                () => nn.functional.conv2d(Rounded(xl, dt), conv.weight!.to(ScalarType.Float32), conv.bias!.to(ScalarType.Float32), conv.stride, conv.padding));
            AssertCorrectlyRounded(emulatedHeld, nativeHeld, fp32Held, dt, $"conv stride {stride} held in {precision}");
        }
    }

    [Theory]
    [MemberData(nameof(Precisions))]
    public void Attention_IsTheFp32ResultCorrectlyRounded(string precision)
    {
        var dt = MixedPrecision.Parse(precision)!.Value;
        using var scope = torch.NewDisposeScope();
        var g = new Generator(3);
        var q = torch.randn(new long[] { 2, 4, 50, 16 }, generator: g).to(dt);
        var k = torch.randn(new long[] { 2, 4, 7, 16 }, generator: g).to(dt);
        var v = torch.randn(new long[] { 2, 4, 7, 16 }, generator: g).to(dt);
        var mask = torch.zeros(2, 1, 50, 7);
        mask[.., .., .., 5..] = torch.tensor(float.NegativeInfinity);
        var f32 = ScalarType.Float32;
        var (emulated, native, fp32) = Three(() => MixedPrecision.ScaledDotProductAttention(q, k, v, mask),
            () => nn.functional.scaled_dot_product_attention(q.to(f32), k.to(f32), v.to(f32), mask));
        AssertCorrectlyRounded(emulated, native, fp32, dt, "attention");
    }

    [Theory]
    [MemberData(nameof(Precisions))]
    public void Gradients_ThroughEmulatedLayers_AreFp32AndMatchTheNativeOnes(string precision)
    {
        var dt = MixedPrecision.Parse(precision)!.Value;
        using var scope = torch.NewDisposeScope();
        var g = new Generator(4);
        var conv = DreamBooth.Engine.Models.Layers.Conv2d(8, 8, 3, 1, 1);
        var linear = nn.Linear(8, 8);
        using (torch.no_grad())
            foreach (var p in conv.parameters().Concat(linear.parameters())) p.copy_(p.to(dt).to(ScalarType.Float32));
        var x = torch.randn(new long[] { 2, 8, 6, 6 }, generator: g);
        Tensor[] Grads()
        {
            conv.zero_grad(); linear.zero_grad();
            using (MixedPrecision.Autocast(dt))
            {
                var h = MixedPrecision.Forward(conv, x);                                   // [2, 8, 6, 6] in dt
                var y = MixedPrecision.Forward(linear, h.permute(0, 2, 3, 1));           // channels as features
                y.to(ScalarType.Float32).pow(2).mean().backward();
            }
            return conv.parameters().Concat(linear.parameters()).Select(p => p.grad!.clone()).ToArray();
        }
        Tensor[] emulated, native;
        using (LowPrecisionOnCpu.OverrideEmulation(true)) emulated = Grads();
        using (LowPrecisionOnCpu.OverrideEmulation(false)) native = Grads();
        Assert.All(emulated, gr => Assert.Equal(ScalarType.Float32, gr.dtype));   // fp32 master weights get fp32 grads
        for (int i = 0; i < emulated.Length; i++)
        {
            // The native weight gradient is computed in dt and rounded, the emulated one in fp32: they differ by the
            // low precision's rounding of the products (a few ulps through two layers), not more.
            double err = Fixtures.RelativeError(emulated[i], native[i]);
            log.WriteLine($"gradient {i}: relative difference {err:E2}");
            Assert.True(err < (dt == ScalarType.BFloat16 ? 3e-2 : 4e-3), $"gradient {i}: relative difference {err:E2}");
        }
    }

    /// <summary>Layers and inputs for the custom backward: Linear on 3-D input, and convolutions whose input gradient needs an output padding.</summary>
    public static TheoryData<string, string> Layers => new()
    {
        { "bf16", "linear" }, { "fp16", "linear" }, { "bf16", "linear, no bias" },
        { "bf16", "conv 3x3" }, { "fp16", "conv 3x3" }, { "bf16", "conv 3x3 stride 2, odd size" }, { "fp16", "conv 3x3 stride 2, even size" },
        { "bf16", "conv 1x1" }, { "bf16", "conv 3x3, frozen bf16 weights" },
    };

    [Theory]
    [MemberData(nameof(Layers))]
    public void CustomBackward_GivesTheGradientsOfTheComposedFp32Ops(string precision, string layer)
    {
        var dt = MixedPrecision.Parse(precision)!.Value;
        const ScalarType f32 = ScalarType.Float32;
        using var scope = torch.NewDisposeScope();
        var g = new Generator(7);
        nn.Module<Tensor, Tensor> m = layer switch
        {
            "linear" => nn.Linear(24, 20),
            "linear, no bias" => nn.Linear(24, 20, hasBias: false),
            "conv 1x1" => DreamBooth.Engine.Models.Layers.Conv2d(6, 5, 1),
            _ when layer.Contains("stride 2") => DreamBooth.Engine.Models.Layers.Conv2d(6, 5, 3, 2, 1),
            _ => DreamBooth.Engine.Models.Layers.Conv2d(6, 5, 3, 1, 1),
        };
        bool frozen = layer.Contains("frozen");
        if (frozen) { m.to(dt); foreach (var p in m.parameters()) p.requires_grad_(false); }
        long size = layer.Contains("odd") ? 9 : 8;
        var x = (layer.StartsWith("linear") ? torch.randn(new long[] { 2, 7, 24 }, generator: g) : torch.randn(new long[] { 2, 6, size, size }, generator: g))
            .to(dt).requires_grad_(true);
        Func<Tensor> emulated = () => { using var _ = MixedPrecision.Autocast(frozen ? null : dt); return MixedPrecision.Forward(m, x); };
        long[] outShape;
        using (LowPrecisionOnCpu.OverrideEmulation(true)) using (torch.no_grad()) outShape = emulated().shape;
        var upstream = torch.randn(outShape, generator: g);
        var parameters = m.parameters().ToArray();

        Tensor[] Grads(Func<Tensor> forward)
        {
            x.grad?.zero_();
            foreach (var p in parameters) p.grad?.zero_();
            var y = forward();
            Assert.Equal(dt, y.dtype);
            (y.to(f32) * upstream).sum().backward();
            DreamBooth.Engine.Training.GradientCheckpoint.ThrowPendingError();
            return new[] { x }.Concat(parameters.Where(p => p.requires_grad)).Select(t => t.grad!.clone()).ToArray();
        }
        Tensor[] custom;
        using (LowPrecisionOnCpu.OverrideEmulation(true)) custom = Grads(emulated);
        var composed = Grads(() => (m switch
        {
            TorchSharp.Modules.Linear l => nn.functional.linear(x.to(f32), l.weight!.to(f32), l.bias?.to(f32)),
            TorchSharp.Modules.Conv2d c => nn.functional.conv2d(x.to(f32), c.weight!.to(f32), c.bias?.to(f32), c.stride, c.padding, c.dilation),
            _ => throw new InvalidOperationException(),
        }).to(dt));
        Assert.Equal(composed.Length, custom.Length);
        for (int i = 0; i < custom.Length; i++)
        {
            Assert.Equal(composed[i].dtype, custom[i].dtype);
            if (custom[i].dtype == f32)
            {
                // fp32 weight gradients: the same sums in another order (unfold + bmm against libtorch's kernel).
                double err = Fixtures.RelativeError(custom[i], composed[i]);
                log.WriteLine($"{layer} {precision} gradient {i} (fp32): relative difference {err:E2}");
                Assert.True(err < 1e-5, $"gradient {i}: relative difference {err:E2}");
            }
            else
            {
                // The input's gradient is rounded to its dtype in both: the fp32 sums agree to ~1e-6, so at most a
                // value lying on a rounding boundary rounds the other way.
                var a = custom[i].to(f32); var b = composed[i].to(f32);
                double ulp = dt == ScalarType.BFloat16 ? Math.Pow(2, -7) : Math.Pow(2, -10);
                double excess = ((a - b).abs() - (torch.maximum(a.abs(), b.abs()) * ulp + 1e-6 * b.abs().max().item<float>())).max().item<float>();
                log.WriteLine($"{layer} {precision} gradient {i} ({custom[i].dtype}): {(a != b).to(f32).mean().item<float>():P1} differ, excess over one ulp {excess:E2}");
                Assert.True(excess <= 0, $"gradient {i}: differs by more than one ulp ({excess:E2} over)");
            }
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void LoRAAdapterHeldInBf16_IsTheFp32ResultCorrectlyRounded(bool conv1x1)
    {
        const ScalarType dt = ScalarType.BFloat16, f32 = ScalarType.Float32;
        using var scope = torch.NewDisposeScope();
        var g = new Generator(8);
        var lora = new DreamBooth.Engine.Lora.LoRALayer(32, 24, 4, 8, f32, torch.CPU) { IsConv1x1 = conv1x1 };
        using (torch.no_grad()) { lora.Down.copy_(torch.randn(lora.Down.shape, generator: g) * 0.2); lora.Up.copy_(torch.randn(lora.Up.shape, generator: g) * 0.2); }
        var reference = new DreamBooth.Engine.Lora.LoRALayer(32, 24, 4, 8, f32, torch.CPU) { IsConv1x1 = conv1x1 };
        lora.to(dt);
        using (torch.no_grad()) { reference.Down.copy_(lora.Down.to(f32)); reference.Up.copy_(lora.Up.to(f32)); }
        var x = (conv1x1 ? torch.randn(new long[] { 2, 32, 5, 5 }, generator: g) : torch.randn(new long[] { 2, 9, 32 }, generator: g)).to(dt);
        using var _ = torch.no_grad();
        var (emulated, native, fp32) = Three(() => lora.forward(x), () => reference.forward(x.to(f32)));
        AssertCorrectlyRounded(emulated, native, fp32, dt, conv1x1 ? "LoRA on a 1x1 conv" : "LoRA on a Linear");
    }

    [Fact]
    public void TinyVaeHeldInBf16_DecodesToBf16Accuracy()
    {
        using var scope = torch.NewDisposeScope();
        string dir = Path.Combine(Fixtures.TinySd, "vae");
        using var vae = AutoencoderKL.FromPretrained(dir, ScalarType.BFloat16);
        using var vae32 = AutoencoderKL.FromPretrained(dir);
        var z = torch.randn(new long[] { 1, vae.Config.LatentChannels, 8, 8 }, generator: new Generator(5)).to(ScalarType.BFloat16);
        using var _ = torch.no_grad();
        Tensor emulated, native;
        using (LowPrecisionOnCpu.OverrideEmulation(true)) emulated = vae.Decode(z);
        using (LowPrecisionOnCpu.OverrideEmulation(false)) native = vae.Decode(z);
        var reference = vae32.Decode(z.to(ScalarType.Float32));
        Assert.Equal(ScalarType.BFloat16, emulated.dtype);
        double emulatedError = Fixtures.RelativeError(emulated.to(ScalarType.Float32), reference);
        double nativeError = Fixtures.RelativeError(native.to(ScalarType.Float32), reference);
        log.WriteLine($"tiny VAE decode in bf16 against fp32: relative error emulated {emulatedError:E2}, native {nativeError:E2}");
        // The per-layer cases above pin the numerics; through the whole decoder the error stays at bf16's level (the
        // bound the autocast tests use for bf16 outputs), about what libtorch's own kernels reach (logged).
        Assert.True(emulatedError > 0);   // it did run in bf16
        Assert.True(emulatedError < 5e-2, $"relative error {emulatedError:E2}");
    }

    [Fact]
    public void Emulation_OnlyForLowPrecisionOnTheCpu()
    {
        using (LowPrecisionOnCpu.OverrideEmulation(true))
        {
            Assert.True(LowPrecisionOnCpu.Emulates(torch.CPU, ScalarType.BFloat16));
            Assert.False(LowPrecisionOnCpu.Emulates(torch.CPU, ScalarType.Float32));
            Assert.False(LowPrecisionOnCpu.Emulates(new Device(DeviceType.CUDA, 0), ScalarType.Float16));
            Assert.Contains("compute in fp32", LowPrecisionOnCpu.Notice(torch.CPU, ScalarType.Float16, "-Precision fp16"));
            // Emulated work runs no slow kernel, so there is nothing to warn about.
            Assert.Null(LowPrecisionOnCpu.Warning(torch.CPU, ScalarType.Float16, "-Precision fp16", _ => 400));
        }
        // Without an override the CPU's instruction sets decide, the same way every time.
        Assert.Equal(!LowPrecisionOnCpu.HasFastKernels(ScalarType.BFloat16), LowPrecisionOnCpu.Emulates(torch.CPU, ScalarType.BFloat16));
        Assert.True(LowPrecisionOnCpu.HasFastKernels(ScalarType.Float32));
        Assert.Null(LowPrecisionOnCpu.Notice(torch.CPU, ScalarType.Float32, "-Precision fp32"));
    }
}
