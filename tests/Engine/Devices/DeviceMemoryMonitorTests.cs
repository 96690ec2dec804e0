using DreamBooth.Engine;
using TorchSharp;
using Xunit;

namespace DreamBooth.Engine.Tests.Devices;

public class DeviceMemoryMonitorTests
{
    public sealed class WithoutNvmlFactAttribute : FactAttribute
    {
        public WithoutNvmlFactAttribute() { if (Nvml.Driver is not null) Skip = "an NVIDIA driver is installed: NVML answers"; }
    }

    [Fact]
    public void OnTheCpuThereIsNothingToMeasure()
    {
        var monitor = DeviceMemoryMonitor.Start(torch.CPU);
        monitor.Sample();
        Assert.Null(monitor.PeakBytes);
        Assert.Equal("n/a (CPU)", monitor.Source);
        monitor.Dispose();
        monitor.Dispose();   // twice is fine
    }

    [Fact]
    public void KeepsTheLargestSampleUntilDisposed()
    {
        var values = new Queue<long?>(new long?[] { 100, null, 700, 300 });
        int calls = 0;
        long? Next() { Interlocked.Increment(ref calls); lock (values) return values.Count > 0 ? values.Dequeue() : 200; }
        var monitor = new DeviceMemoryMonitor(Next, "fake", TimeSpan.FromMilliseconds(1));
        Assert.InRange(monitor.PeakBytes ?? -1, 100, 700);   // a first sample is taken at the start (the thread may have taken more)
        SpinWait.SpinUntil(() => Volatile.Read(ref calls) >= 6, TimeSpan.FromSeconds(10));
        monitor.Dispose();
        Assert.Equal(700, monitor.PeakBytes);
        int after = Volatile.Read(ref calls);
        Thread.Sleep(50);
        Assert.Equal(after, Volatile.Read(ref calls));   // the thread has stopped
        Assert.Equal("fake", monitor.Source);
    }

    [Fact]
    public void AFailingSampleIsSkipped()
    {
        int calls = 0;
        long? Next() => Interlocked.Increment(ref calls) % 2 == 0 ? throw new InvalidOperationException("driver hiccup") : 42;
        using var monitor = new DeviceMemoryMonitor(Next, "fake", TimeSpan.FromMilliseconds(1));
        for (int i = 0; i < 4; i++) monitor.Sample();
        Assert.Equal(42, monitor.PeakBytes);
    }

    [WithoutNvmlFact]
    public void WithoutTheDriverNvmlAnswersNull()
    {
        Assert.Null(Nvml.Open("/nonexistent/libnvidia-ml.so.1"));
        using var monitor = DeviceMemoryMonitor.Start(new torch.Device(DeviceType.CUDA, 0));
        Assert.Null(monitor.PeakBytes);
        Assert.Equal("n/a (NVML not found)", monitor.Source);
    }
}

/// <summary>
/// The NVML binding against a stand-in library compiled here from C declarations of NVML's structs (nvmlMemory_t,
/// nvmlProcessInfo_t of the _v3 query): checks the marshalling (struct layout and padding, buffers, handles) without an
/// NVIDIA driver. Skipped where no C compiler is found or off Linux.
/// </summary>
public class NvmlBindingTests
{
    const string FakeNvml = """
        #include <string.h>
        #include <unistd.h>
        typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
        typedef struct { unsigned int pid; unsigned long long usedGpuMemory; unsigned int gpuInstanceId, computeInstanceId; } nvmlProcessInfo_t;
        static int initialised;
        static unsigned long long calls;
        int nvmlInit_v2(void) { initialised = 1; return 0; }
        int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device) { if (!initialised || index > 0) return 2; *device = (void *)0x5150; return 0; }
        int nvmlDeviceGetName(void *device, char *name, unsigned int length) { if (device != (void *)0x5150) return 2; strncpy(name, "Stand-in GPU 80GB", length); return 0; }
        int nvmlDeviceGetMemoryInfo(void *device, nvmlMemory_t *m) { m->total = 80ULL << 30; m->used = 5ULL << 30; m->free = m->total - m->used; return 0; }
        int nvmlDeviceGetComputeRunningProcesses_v3(void *device, unsigned int *count, nvmlProcessInfo_t *infos) {
            if (*count < 3) { *count = 3; return 7; }
            infos[0].pid = 1; infos[0].usedGpuMemory = 111; infos[0].gpuInstanceId = infos[0].computeInstanceId = 0xFFFFFFFFu;
            infos[1].pid = (unsigned int)getpid(); infos[1].usedGpuMemory = (3ULL << 30) + (calls++ % 4) * (1ULL << 20);
            infos[1].gpuInstanceId = infos[1].computeInstanceId = 0xFFFFFFFFu;
            infos[2].pid = 2; infos[2].usedGpuMemory = 0xFFFFFFFFFFFFFFFFULL; infos[2].gpuInstanceId = infos[2].computeInstanceId = 7;
            *count = 3; return 0;
        }
        """;

    static string? Compile()
    {
        if (!OperatingSystem.IsLinux()) return null;
        var dir = Directory.CreateTempSubdirectory("fake-nvml-").FullName;
        File.WriteAllText(Path.Combine(dir, "nvml.c"), FakeNvml);
        var library = Path.Combine(dir, "libnvidia-ml-standin.so");
        foreach (var compiler in new[] { "cc", "gcc", "clang" })
        {
            try
            {
                var psi = new System.Diagnostics.ProcessStartInfo(compiler, $"-shared -fPIC -o \"{library}\" \"{Path.Combine(dir, "nvml.c")}\"") { RedirectStandardError = true, RedirectStandardOutput = true };
                using var p = System.Diagnostics.Process.Start(psi)!;
                p.WaitForExit(60_000);
                if (p.ExitCode == 0 && File.Exists(library)) return library;
            }
            catch (System.ComponentModel.Win32Exception) { /* not installed: try the next */ }
        }
        return null;
    }

    static readonly Lazy<string?> s_library = new(Compile);

    public sealed class CompilerFactAttribute : FactAttribute
    {
        public CompilerFactAttribute()
        {
            if (!OperatingSystem.IsLinux()) Skip = "the stand-in NVML is built with a Linux C compiler";
            else if (s_library.Value is null) Skip = "no C compiler (cc, gcc, clang) to build the stand-in NVML";
        }
    }

    static Nvml OpenStandIn()
    {
        return Nvml.Open("/nonexistent/libnvidia-ml.so.1", s_library.Value!) ?? throw new InvalidOperationException("the stand-in did not load");
    }

    [CompilerFact]
    public void ReadsNameMemoryAndThisProcess()
    {
        var nvml = OpenStandIn();
        Assert.Equal("Stand-in GPU 80GB", nvml.DeviceName(0));
        Assert.Equal((80L << 30, 5L << 30), nvml.DeviceMemory(0));
        var mine = nvml.ProcessMemory(0, Environment.ProcessId);
        Assert.InRange(mine!.Value, 3L << 30, (3L << 30) + (3L << 20));
        Assert.Equal(111, nvml.ProcessMemory(0, 1));
        Assert.Null(nvml.ProcessMemory(0, 2));        // NVML_VALUE_NOT_AVAILABLE
        Assert.Null(nvml.ProcessMemory(0, 999_999));  // not listed
        Assert.Null(nvml.DeviceName(1));              // no such device
        Assert.Null(nvml.DeviceMemory(-1));
    }

    [CompilerFact]
    public void TheMonitorFollowsThisProcess()
    {
        var nvml = OpenStandIn();
        using var monitor = DeviceMemoryMonitor.Start(new torch.Device(DeviceType.CUDA, 0), nvml, TimeSpan.FromHours(1));   // samples by hand only
        for (int i = 0; i < 8; i++) monitor.Sample();
        Assert.Equal("this process on the device (NVML)", monitor.Source);
        Assert.Equal((3L << 30) + (3L << 20), monitor.PeakBytes);
    }
}
