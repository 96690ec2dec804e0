using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine;

/// <summary>
/// Whether fp16/bf16 is fast on this CPU. libtorch runs them through oneDNN only on CPUs it finds fit (AVX-512 or AMX
/// for bf16, AVX-512-FP16 or AMX-FP16 for fp16, AVX-NE-CONVERT for both); elsewhere it takes reference kernels that
/// are hundreds of times slower (on an AVX2 CPU: a 3×3 convolution ~400×, a Linear's backward ~30×), so a bf16 run
/// that would take an hour in fp32 takes days.
/// <para>Where the CPU lacks those instructions (<see cref="HasFastKernels"/>, oneDNN's own test), <see cref="Emulates"/>
/// is true and the models compute their convolutions, Linear layers and attention in fp32 on fp16/bf16 values, rounding
/// the results back (<c>MixedPrecision.Forward</c>): what the low-precision kernels compute (they accumulate in fp32
/// too), at fp32 speed. That decision follows the instruction sets, not a timing, so a run is the same from one start
/// to the next. Only the warning for a CPU that has the instructions but still runs slowly (<see cref="Warning"/>)
/// times one small convolution in both precisions (<see cref="Slowdown"/>, once per process and dtype).</para>
/// </summary>
public static class LowPrecisionOnCpu
{
    /// <summary>Above this many times the fp32 time, low precision counts as slow (fallback kernels are ≥ 100×).</summary>
    public const double SlowFactor = 8;

    static readonly ConcurrentDictionary<ScalarType, double> s_factors = new();

    /// <summary>How many times longer a small 3×3 convolution takes in <paramref name="dtype"/> than in float32 on the CPU.</summary>
    public static double Slowdown(ScalarType dtype) => dtype == ScalarType.Float32 ? 1.0 : s_factors.GetOrAdd(dtype, Measure);

    /// <summary>
    /// A warning for the user when <paramref name="dtype"/> is a low precision, <paramref name="device"/> the CPU, the
    /// CPU slow at it and the work not emulated (a CPU that has the instructions but not the speed); otherwise null. <paramref name="what"/> names the option ("-MixedPrecision bf16").
    /// </summary>
    public static string? Warning(Device device, ScalarType dtype, string what, Func<ScalarType, double>? slowdown = null)
    {
        if (device.type != DeviceType.CPU || dtype is not (ScalarType.Float16 or ScalarType.BFloat16)) return null;
        if (Emulates(device, dtype)) return null;   // computed in fp32 arithmetic: no slow kernels run (see Notice)
        double factor = (slowdown ?? Slowdown)(dtype);
        if (factor <= SlowFactor) return null;
        return $"{what} on this CPU runs libtorch's slow fallback kernels (a convolution took {factor:F0}× as long as in fp32), " +
            "so the work will take many times longer than in fp32. On this machine use fp32 (-MixedPrecision no, -Precision fp32); " +
            "fp16/bf16 pay off on GPUs and on CPUs with AVX-512 or AMX.";
    }

    static readonly AsyncLocal<bool?> s_override = new();

    /// <summary>
    /// True when fp16/bf16 work on <paramref name="device"/> is computed in fp32 arithmetic: the device is the CPU and it
    /// lacks the instructions libtorch's fast kernels for <paramref name="dtype"/> need (see <see cref="HasFastKernels"/>).
    /// </summary>
    public static bool Emulates(Device device, ScalarType dtype)
        => device.type == DeviceType.CPU && dtype is ScalarType.Float16 or ScalarType.BFloat16
            && !(s_override.Value is bool emulate ? !emulate : HasFastKernels(dtype));

    /// <summary>
    /// Whether libtorch runs <paramref name="dtype"/> through oneDNN on this CPU, by oneDNN's test: bf16 needs AVX-512
    /// (F, BW, VL, DQ: "avx512_core"), fp16 AVX-512-FP16; AVX-NE-CONVERT with AVX-VNNI-INT8 ("avx2_vnni_2") serves both.
    /// Other architectures are assumed to have them (ARM's bf16/fp16 paths are not emulated here).
    /// </summary>
    public static bool HasFastKernels(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => s_fastBf16.Value,
        ScalarType.Float16 => s_fastFp16.Value,
        _ => true,
    };

    // CPUID traps to the hypervisor on virtual machines: ask once, not on every layer call.
    static readonly Lazy<bool> s_fastBf16 = new(() => ProbeInstructionSets(ScalarType.BFloat16));
    static readonly Lazy<bool> s_fastFp16 = new(() => ProbeInstructionSets(ScalarType.Float16));

    static bool ProbeInstructionSets(ScalarType dtype)
    {
        if (!X86Base.IsSupported) return true;
        if (X86Base.CpuId(0, 0).Eax < 7) return false;   // no leaf 7: no AVX-512 either
        bool avx512Core = Avx512F.IsSupported && Avx512BW.IsSupported && Avx512DQ.IsSupported && Avx512F.VL.IsSupported;
        var (_, _, _, edx7) = X86Base.CpuId(7, 0);
        var (_, _, _, edx71) = X86Base.CpuId(7, 1);
        bool avx2Vnni2 = Avx2.IsSupported && (edx71 & (1 << 4)) != 0 && (edx71 & (1 << 5)) != 0;   // AVX-VNNI-INT8, AVX-NE-CONVERT
        bool avx512Fp16 = avx512Core && (edx7 & (1 << 23)) != 0;
        return avx2Vnni2 || (dtype == ScalarType.BFloat16 ? avx512Core : avx512Fp16);
    }

    /// <summary>Forces (true) or forbids (false) emulation on the calling flow until disposed; for tests.</summary>
    internal static IDisposable OverrideEmulation(bool emulate)
    {
        var previous = s_override.Value;
        s_override.Value = emulate;
        return new DisposableAction(() => s_override.Value = previous);
    }

    /// <summary>
    /// What the user is told when <see cref="Emulates"/>: fp16/bf16 layers run as fp32 arithmetic here; otherwise null.
    /// </summary>
    public static string? Notice(Device device, ScalarType dtype, string what)
        => Emulates(device, dtype)
            ? $"{what}: this CPU lacks the instructions libtorch's fast {Name(dtype)} kernels need (AVX-512, AMX), so " +
              $"convolutions, Linear layers and attention compute in fp32 arithmetic on the {Name(dtype)} values and round " +
              $"their results to {Name(dtype)}, at about fp32 speed; weights and activations between layers stay in {Name(dtype)}."
            : null;

    static string Name(ScalarType dtype) => dtype == ScalarType.BFloat16 ? "bf16" : "fp16";

    static double Measure(ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var generator = new Generator(0);
        var x = torch.randn(new long[] { 1, 64, 32, 32 }, generator: generator);
        var w = torch.randn(new long[] { 64, 64, 3, 3 }, generator: generator) * 0.05;
        double Time(Tensor input, Tensor weight, int runs, bool stopWhenSlow)
        {
            double best = double.MaxValue;
            for (int i = 0; i < runs; i++)
            {
                var sw = Stopwatch.StartNew();
                nn.functional.conv2d(input, weight, padding: new long[] { 1, 1 }).Dispose();
                best = Math.Min(best, sw.Elapsed.TotalMilliseconds);
                if (stopWhenSlow && best > 50) break;   // clearly slow: one run says enough
            }
            return best;
        }
        double fp32 = Time(x, w, 4, stopWhenSlow: false);
        double low = Time(x.to(dtype), w.to(dtype), 3, stopWhenSlow: true);
        return low / Math.Max(fp32, 1e-3);
    }
}
