using TorchSharp;

namespace DreamBooth.Engine;

/// <summary>
/// Peak device memory of a run on a CUDA device: samples, on a background thread, what this process holds on the device
/// according to NVML (the figure nvidia-smi lists and the one to compare with a card's size: CUDA context plus all the
/// allocator has reserved) and keeps the largest. TorchSharp exposes no allocator statistics
/// (torch.cuda.max_memory_allocated), hence NVML. Where NVML does not list the process (a container with its own PID
/// namespace), it falls back to the device's used memory minus what was in use at the start, which counts other
/// processes too. On the CPU, or without NVML, <see cref="PeakBytes"/> is null.
/// </summary>
public sealed class DeviceMemoryMonitor : IDisposable
{
    readonly Func<long?> _sample;
    readonly Thread? _thread;
    readonly ManualResetEventSlim _stop = new();
    readonly TimeSpan _interval;
    long _peak = -1;
    bool _disposed;

    /// <summary>What <see cref="PeakBytes"/> measures, for a report.</summary>
    public string Source { get; }

    /// <summary>The largest sample so far, in bytes; null before the first sample or where nothing can be measured.</summary>
    public long? PeakBytes { get { var p = Interlocked.Read(ref _peak); return p < 0 ? null : p; } }

    internal DeviceMemoryMonitor(Func<long?>? sample, string source, TimeSpan interval)
    {
        _sample = sample ?? (() => null);
        Source = source;
        _interval = interval;
        if (sample is null) return;
        Sample();
        _thread = new Thread(Run) { IsBackground = true, Name = "DreamBooth device memory" };
        _thread.Start();
    }

    /// <summary>Starts sampling for <paramref name="device"/> every <paramref name="interval"/> (default 100 ms: libtorch's caching allocator keeps what it reserved, so a peak lasts).</summary>
    public static DeviceMemoryMonitor Start(torch.Device device, TimeSpan? interval = null)
        => Start(device, device.type == DeviceType.CUDA ? Nvml.Driver : null, interval);

    internal static DeviceMemoryMonitor Start(torch.Device device, Nvml? nvml, TimeSpan? interval = null)
    {
        var every = interval ?? TimeSpan.FromMilliseconds(100);
        if (device.type != DeviceType.CUDA) return new DeviceMemoryMonitor(null, "n/a (CPU)", every);
        if (nvml is null) return new DeviceMemoryMonitor(null, "n/a (NVML not found)", every);
        int index = Math.Max(device.index, 0), pid = Environment.ProcessId;
        if (nvml.ProcessMemory(index, pid) is not null || ProcessListed(nvml, index, pid))
            return new DeviceMemoryMonitor(() => nvml.ProcessMemory(index, pid), "this process on the device (NVML)", every);
        var baseline = nvml.DeviceMemory(index)?.Used ?? 0;
        return new DeviceMemoryMonitor(() => nvml.DeviceMemory(index)?.Used - baseline, "device memory in use minus the start (NVML; counts other processes)", every);
    }

    // A process without a CUDA context yet is not listed; make one so that the check means something.
    static bool ProcessListed(Nvml nvml, int index, int pid)
    {
        try { using var _ = torch.zeros(1, device: new torch.Device(DeviceType.CUDA, index)); }
        catch { return false; }
        return nvml.ProcessMemory(index, pid) is not null;
    }

    /// <summary>Takes one sample now (also called by the background thread).</summary>
    public void Sample()
    {
        long? value;
        try { value = _sample(); } catch { value = null; }
        if (value is not long v) return;
        long current;
        while (v > (current = Interlocked.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, v, current) != current) { }
    }

    void Run()
    {
        while (!_stop.Wait(_interval)) Sample();
    }

    /// <summary>Stops sampling after a last sample.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _stop.Set();
        _thread?.Join();
        if (_thread is not null) Sample();
        _stop.Dispose();
    }
}
