using DreamBooth.Engine;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Tests.Devices;

public class LowPrecisionOnCpuTests
{
    [Fact]
    public void WarnsOnlyForLowPrecisionOnASlowCpuThatDoesNotEmulate()
    {
        Func<ScalarType, double> slow = _ => 400, fast = _ => 1.3;
        using var native = LowPrecisionOnCpu.OverrideEmulation(false);   // a CPU that runs its own slow kernels
        var message = LowPrecisionOnCpu.Warning(torch.CPU, ScalarType.BFloat16, "-MixedPrecision bf16", slow);
        Assert.NotNull(message);
        Assert.Contains("-MixedPrecision bf16", message);
        Assert.Contains("400×", message);
        Assert.Contains("-MixedPrecision no", message);   // says what to do
        Assert.Null(LowPrecisionOnCpu.Warning(torch.CPU, ScalarType.Float16, "-Precision fp16", fast));
        Assert.Null(LowPrecisionOnCpu.Warning(torch.CPU, ScalarType.Float32, "-Precision fp32", slow));
        Assert.Null(LowPrecisionOnCpu.Warning(new Device(DeviceType.CUDA, 0), ScalarType.Float16, "-Precision fp16", slow));
    }

    [Fact]
    public void MeasuresOncePerDtype()
    {
        Assert.Equal(1.0, LowPrecisionOnCpu.Slowdown(ScalarType.Float32));
        double first = LowPrecisionOnCpu.Slowdown(ScalarType.BFloat16);
        Assert.True(double.IsFinite(first) && first > 0, $"slowdown {first}");
        Assert.Equal(first, LowPrecisionOnCpu.Slowdown(ScalarType.BFloat16));   // cached: the probe runs once per process
    }
}
