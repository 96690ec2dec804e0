using System.Runtime.InteropServices;
using System.Text;

namespace DreamBooth.Engine;

/// <summary>
/// The few calls of NVML (the NVIDIA Management Library, shipped with the driver) the engine uses: device name and memory,
/// and the memory a process holds on a device. Loaded by hand because the driver installs it as
/// <c>libnvidia-ml.so.1</c> on Linux (the unversioned name comes only with development packages) and <c>nvml.dll</c> on
/// Windows. Every call answers null where the library, the entry point or the value is missing; none throws.
/// Note NVML orders devices by PCI bus, CUDA fastest-first by default.
/// </summary>
internal sealed unsafe class Nvml
{
    const int Success = 0;
    const int ProcessCapacity = 256;   // processes listed per query
    const ulong ValueNotAvailable = ulong.MaxValue;   // NVML_VALUE_NOT_AVAILABLE: e.g. per-process memory under Windows WDDM

    [StructLayout(LayoutKind.Sequential)]
    struct Memory { public ulong Total, Free, Used; }

    // nvmlProcessInfo_t of the _v2/_v3 queries; _v1 has only the first two fields.
    [StructLayout(LayoutKind.Sequential)]
    struct ProcessInfo { public uint Pid; public ulong UsedGpuMemory; public uint GpuInstanceId, ComputeInstanceId; }

    [StructLayout(LayoutKind.Sequential)]
    struct ProcessInfoV1 { public uint Pid; public ulong UsedGpuMemory; }

    sealed class Api
    {
        public delegate* unmanaged<int> Init;
        public delegate* unmanaged<uint, IntPtr*, int> GetHandle;
        public delegate* unmanaged<IntPtr, byte*, uint, int> GetName;
        public delegate* unmanaged<IntPtr, Memory*, int> GetMemory;
        public delegate* unmanaged<IntPtr, uint*, ProcessInfo*, int> GetProcesses;      // _v3 or _v2
        public delegate* unmanaged<IntPtr, uint*, ProcessInfoV1*, int> GetProcessesV1;  // old drivers
    }

    static readonly Lazy<Nvml?> s_driver = new(() =>
        Open(OperatingSystem.IsWindows() ? ["nvml.dll"] : ["libnvidia-ml.so.1", "libnvidia-ml.so"]));

    /// <summary>The NVIDIA driver's NVML, initialised; null where there is none.</summary>
    public static Nvml? Driver => s_driver.Value;

    readonly Api _api;
    Nvml(Api api) => _api = api;

    /// <summary>The first of <paramref name="names"/> (library names or paths) that loads and initialises.</summary>
    internal static Nvml? Open(params string[] names)
    {
        foreach (var name in names)
        {
            if (!System.Runtime.InteropServices.NativeLibrary.TryLoad(name, out var lib)) continue;
            IntPtr Export(string entry) => System.Runtime.InteropServices.NativeLibrary.TryGetExport(lib, entry, out var f) ? f : IntPtr.Zero;
            IntPtr init = Export("nvmlInit_v2"), handle = Export("nvmlDeviceGetHandleByIndex_v2");
            if (init == IntPtr.Zero || handle == IntPtr.Zero) return null;
            var api = new Api
            {
                Init = (delegate* unmanaged<int>)init,
                GetHandle = (delegate* unmanaged<uint, IntPtr*, int>)handle,
                GetName = (delegate* unmanaged<IntPtr, byte*, uint, int>)Export("nvmlDeviceGetName"),
                GetMemory = (delegate* unmanaged<IntPtr, Memory*, int>)Export("nvmlDeviceGetMemoryInfo"),
            };
            var processes = Export("nvmlDeviceGetComputeRunningProcesses_v3");
            if (processes == IntPtr.Zero) processes = Export("nvmlDeviceGetComputeRunningProcesses_v2");
            api.GetProcesses = (delegate* unmanaged<IntPtr, uint*, ProcessInfo*, int>)processes;
            api.GetProcessesV1 = (delegate* unmanaged<IntPtr, uint*, ProcessInfoV1*, int>)Export("nvmlDeviceGetComputeRunningProcesses");
            try { return api.Init() == Success ? new Nvml(api) : null; }
            catch { return null; }
        }
        return null;
    }

    bool TryHandle(int index, out IntPtr device)
    {
        device = IntPtr.Zero;
        if (index < 0) return false;
        IntPtr h;
        if (_api.GetHandle((uint)index, &h) != Success) return false;
        device = h;
        return true;
    }

    public string? DeviceName(int index)
    {
        if (_api.GetName == null || !TryHandle(index, out var device)) return null;
        var buffer = stackalloc byte[96];
        if (_api.GetName(device, buffer, 96) != Success) return null;
        int length = 0;
        while (length < 96 && buffer[length] != 0) length++;
        return Encoding.ASCII.GetString(buffer, length);
    }

    /// <summary>Total and used memory of the whole device, in bytes.</summary>
    public (long Total, long Used)? DeviceMemory(int index)
    {
        if (_api.GetMemory == null || !TryHandle(index, out var device)) return null;
        Memory m;
        return _api.GetMemory(device, &m) == Success ? ((long)m.Total, (long)m.Used) : null;
    }

    /// <summary>
    /// The device memory process <paramref name="pid"/> holds on device <paramref name="index"/> (what nvidia-smi lists:
    /// the CUDA context plus everything its allocator has reserved), or null where NVML cannot tell (process not
    /// listed, e.g. in a container with its own PID namespace; value not available under Windows WDDM).
    /// </summary>
    public long? ProcessMemory(int index, int pid)
    {
        if (!TryHandle(index, out var device)) return null;
        uint count = (uint)ProcessCapacity;
        if (_api.GetProcesses != null)
        {
            var infos = stackalloc ProcessInfo[ProcessCapacity];
            if (_api.GetProcesses(device, &count, infos) != Success) return null;   // incl. more than 256 processes
            return UsedBy(pid, count, i => (infos[i].Pid, infos[i].UsedGpuMemory));
        }
        if (_api.GetProcessesV1 != null)
        {
            var infos = stackalloc ProcessInfoV1[ProcessCapacity];
            if (_api.GetProcessesV1(device, &count, infos) != Success) return null;
            return UsedBy(pid, count, i => (infos[i].Pid, infos[i].UsedGpuMemory));
        }
        return null;
    }

    static long? UsedBy(int pid, uint count, Func<int, (uint Pid, ulong Used)> entry)
    {
        for (int i = 0; i < (int)Math.Min(count, (uint)ProcessCapacity); i++)
        {
            var (p, used) = entry(i);
            if (p == (uint)pid) return used == ValueNotAvailable ? null : (long)used;
        }
        return null;
    }
}
