using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine;

/// <summary>Parses user device and precision names ("cpu", "cuda", "cuda:1"; "fp32", "fp16", "bf16").</summary>
public static class DeviceSelection
{
    public static readonly string[] PrecisionNames = { "fp32", "fp16", "bf16" };

    /// <summary>"auto" (or null) picks cuda:0 when available, else cpu.</summary>
    public static Device Parse(string? name)
    {
        name = (name ?? "auto").Trim().ToLowerInvariant();
        if (name is "auto" or "") return CudaAvailable() ? torch.CUDA : torch.CPU;
        if (name == "cpu") return torch.CPU;
        if (name == "cuda" || name.StartsWith("cuda:", StringComparison.Ordinal))
        {
            if (!CudaAvailable())
                throw new ArgumentException($"Device '{name}' was asked for, but this build has no CUDA device available (backend cpu or no GPU). Use -Device cpu, or build with -Backend cuda-linux / cuda-windows.");
            int index = name == "cuda" ? 0 : int.TryParse(name[5..], out var i) ? i : -1;
            if (index < 0 || index >= torch.cuda.device_count())
                throw new ArgumentException($"Device '{name}' does not exist: {torch.cuda.device_count()} CUDA device(s) found.");
            return new Device(DeviceType.CUDA, index);
        }
        throw new ArgumentException($"Unknown device '{name}'. Use auto, cpu, cuda or cuda:N.");
    }

    public static bool CudaAvailable()
    {
        try { return torch.cuda.is_available(); } catch { return false; }
    }

    /// <summary>null or "auto": fp16 on CUDA, fp32 on CPU (what diffusers users expect).</summary>
    public static ScalarType ParsePrecision(string? name, Device device) => (name ?? "auto").Trim().ToLowerInvariant() switch
    {
        "auto" or "" => device.type == DeviceType.CUDA ? ScalarType.Float16 : ScalarType.Float32,
        "fp32" or "float32" or "no" => ScalarType.Float32,
        "fp16" or "float16" or "half" => ScalarType.Float16,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        var other => throw new ArgumentException($"Unknown precision '{other}'. Use fp32, fp16 or bf16."),
    };

    public static string PrecisionName(ScalarType t) => t switch
    {
        ScalarType.Float16 => "fp16",
        ScalarType.BFloat16 => "bf16",
        _ => "fp32",
    };
}
