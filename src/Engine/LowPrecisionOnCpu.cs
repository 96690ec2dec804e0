using System.Collections.Concurrent;
using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine;

/// <summary>
/// Whether fp16/bf16 is fast on this CPU. libtorch runs them through oneDNN only on CPUs it finds fit (AVX-512 or AMX
/// for bf16, AVX-512-FP16 or AMX-FP16 for fp16, AVX-NE-CONVERT for both); elsewhere it takes reference kernels that
/// are hundreds of times slower (on an AVX2 CPU: a 3×3 convolution ~400×, a Linear's backward ~30×), so a bf16 run
/// that would take an hour in fp32 takes days. Rather than follow libtorch's CPU tests from version to version, this
/// times one small convolution in both precisions, once per process and dtype (well under a second even where slow).
/// </summary>
public static class LowPrecisionOnCpu
{
    /// <summary>Above this many times the fp32 time, low precision counts as slow (fallback kernels are ≥ 100×).</summary>
    public const double SlowFactor = 8;

    static readonly ConcurrentDictionary<ScalarType, double> s_factors = new();

    /// <summary>How many times longer a small 3×3 convolution takes in <paramref name="dtype"/> than in float32 on the CPU.</summary>
    public static double Slowdown(ScalarType dtype) => dtype == ScalarType.Float32 ? 1.0 : s_factors.GetOrAdd(dtype, Measure);

    /// <summary>
    /// A warning for the user when <paramref name="dtype"/> is a low precision, <paramref name="device"/> the CPU and
    /// the CPU slow at it; otherwise null. <paramref name="what"/> names the option ("-MixedPrecision bf16").
    /// </summary>
    public static string? Warning(Device device, ScalarType dtype, string what, Func<ScalarType, double>? slowdown = null)
    {
        if (device.type != DeviceType.CPU || dtype is not (ScalarType.Float16 or ScalarType.BFloat16)) return null;
        double factor = (slowdown ?? Slowdown)(dtype);
        if (factor <= SlowFactor) return null;
        return $"{what} on this CPU runs libtorch's slow fallback kernels (a convolution took {factor:F0}× as long as in fp32), " +
            "so the work will take many times longer than in fp32. On this machine use fp32 (-MixedPrecision no, -Precision fp32); " +
            "fp16/bf16 pay off on GPUs and on CPUs with AVX-512 or AMX.";
    }

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
