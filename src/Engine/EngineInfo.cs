using TorchSharp;

namespace DreamBooth.Engine;

/// <summary>What the engine runs on: versions, backend, devices. Plain data so the module can map it.</summary>
public sealed record EngineDevice(string Name, string Kind, int Index, string? Description, long? TotalMemoryBytes);

public sealed record EngineInfo(
    string EngineVersion,
    string TorchSharpVersion,
    string LibTorchVersion,
    string Backend,
    IReadOnlyList<EngineDevice> Devices,
    int Threads,
    string DefaultDType,
    string? NativeLibraryPath)
{
    public static EngineInfo Collect()
    {
        var devices = new List<EngineDevice> { new("cpu", "cpu", 0, Environment.ProcessorCount + " logical cores", null) };
        bool cuda = false;
        try { cuda = torch.cuda.is_available(); } catch { /* CPU-only natives */ }
        if (cuda)
        {
            for (int i = 0; i < torch.cuda.device_count(); i++)
                devices.Add(new($"cuda:{i}", "cuda", i, Nvml.Driver?.DeviceName(i), Nvml.Driver?.DeviceMemory(i)?.Total));
        }
        var tsAsm = typeof(torch).Assembly;
        string tsVersion = tsAsm.GetName().Version?.ToString(3) ?? "?";
        return new EngineInfo(
            typeof(EngineInfo).Assembly.GetName().Version?.ToString(3) ?? "?",
            tsVersion,
            LibTorchVersionFor(tsVersion),
            cuda ? "cuda" : "cpu",
            devices,
            torch.get_num_threads(),
            torch.get_default_dtype().ToString(),
            NativeLibrary.LoadedPath);
    }

    // TorchSharp does not expose libtorch's version string; each TorchSharp release pins one libtorch.
    static string LibTorchVersionFor(string torchSharp) => torchSharp switch
    {
        "0.107.0" => "2.10.0",
        "0.106.0" => "2.9.0",
        "0.105.0" or "0.105.1" or "0.105.2" => "2.7.1",
        _ => "unknown",
    };
}
