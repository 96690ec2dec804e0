namespace DreamBooth;

/// <summary>A compute device the engine can use.</summary>
public sealed class DreamBoothDevice
{
    public string Name { get; init; } = "";
    public string Kind { get; init; } = "";
    public int Index { get; init; }
    public string? Description { get; init; }
    public long? TotalMemoryBytes { get; init; }
    public double? TotalMemoryGB => TotalMemoryBytes is long b ? Math.Round(b / 1073741824.0, 1) : null;
    public override string ToString() => Name;
}

/// <summary>What Get-DreamBoothEnvironment reports: versions, backend, devices and where the natives came from.</summary>
public sealed class DreamBoothEnvironment
{
    public string ModuleVersion { get; init; } = "";
    public string TorchSharpVersion { get; init; } = "";
    public string LibTorchVersion { get; init; } = "";
    public string Backend { get; init; } = "";
    public DreamBoothDevice[] Devices { get; init; } = Array.Empty<DreamBoothDevice>();
    public int Threads { get; init; }
    public string DefaultDType { get; init; } = "";
    public string? NativeLibraryPath { get; init; }
    public string? EngineLoadContext { get; init; }
    /// <summary>The CPU memory policy applied on import (Linux: glibc mmap threshold and libtorch huge pages).</summary>
    public string? CpuAllocator { get; init; }
    /// <summary>
    /// How many times longer a small convolution takes on this CPU in fp16 / bf16 than in fp32 (measured once per session).
    /// Above 8, libtorch runs that precision through slow fallback kernels here: use fp32 on this CPU.
    /// </summary>
    public double CpuFp16Slowdown { get; init; }
    public double CpuBf16Slowdown { get; init; }
    public string PowerShellVersion { get; init; } = "";
    public string OperatingSystem { get; init; } = "";
}
