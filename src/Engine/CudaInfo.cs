using System.Runtime.InteropServices;
using System.Text;

namespace DreamBooth.Engine;

/// <summary>
/// Device name and memory for CUDA devices. TorchSharp exposes neither, so ask NVML (shipped with the NVIDIA
/// driver) and answer null where it is missing. Note NVML orders devices by PCI bus, CUDA fastest-first by default.
/// </summary>
internal static class CudaInfo
{
    [StructLayout(LayoutKind.Sequential)]
    struct NvmlMemory { public ulong Total, Free, Used; }

    static class Nvml
    {
        const string Lib = "nvidia-ml";
        [DllImport(Lib, EntryPoint = "nvmlInit_v2")] public static extern int Init();
        [DllImport(Lib, EntryPoint = "nvmlDeviceGetHandleByIndex_v2")] public static extern int GetHandle(uint index, out IntPtr device);
        [DllImport(Lib, EntryPoint = "nvmlDeviceGetName")] public static extern int GetName(IntPtr device, byte[] name, uint length);
        [DllImport(Lib, EntryPoint = "nvmlDeviceGetMemoryInfo")] public static extern int GetMemory(IntPtr device, out NvmlMemory memory);
    }

    static bool? s_ready;

    static bool Ready()
    {
        if (s_ready is bool r) return r;
        try { s_ready = Nvml.Init() == 0; } catch { s_ready = false; }
        return s_ready.Value;
    }

    public static string? DeviceName(int index)
    {
        if (!Ready()) return null;
        try
        {
            if (Nvml.GetHandle((uint)index, out var h) != 0) return null;
            var buf = new byte[96];
            if (Nvml.GetName(h, buf, (uint)buf.Length) != 0) return null;
            int end = Array.IndexOf(buf, (byte)0);
            return Encoding.ASCII.GetString(buf, 0, end < 0 ? buf.Length : end);
        }
        catch { return null; }
    }

    public static long? TotalMemory(int index)
    {
        if (!Ready()) return null;
        try
        {
            if (Nvml.GetHandle((uint)index, out var h) != 0) return null;
            return Nvml.GetMemory(h, out var m) == 0 ? (long)m.Total : null;
        }
        catch { return null; }
    }
}
