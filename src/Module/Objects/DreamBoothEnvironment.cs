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
    /// <summary>The CUDA caching allocator's settings applied on import (Linux: expandable segments), or the user's.</summary>
    public string? CudaAllocator { get; init; }
    /// <summary>Which code path MKL runs libtorch's CPU matrix products on (its AVX2 path on non-Intel CPUs: set on import), or the user's MKL_CBWR.</summary>
    public string? CpuMatrixLibrary { get; init; }
    /// <summary>
    /// Host memory new allocations can still get (Linux: MemAvailable plus free swap, within the process's cgroup
    /// limits; Windows: the commit charge left), in GiB: what a CPU run's weights, gradients and optimizer state are
    /// checked against before it starts. Null where the OS does not say.
    /// </summary>
    public double? AvailableMemoryGB { get; init; }
    /// <summary>Whether -Deterministic (libtorch's deterministic algorithms) works with the loaded libtorch.</summary>
    public string? DeterministicAlgorithms { get; init; }
    /// <summary>
    /// How many times longer a small convolution takes on this CPU in fp16 / bf16 than in fp32 with libtorch's own
    /// kernels (measured once per session). Above LowPrecisionOnCpu.SlowFactor (8) those are slow fallback kernels.
    /// </summary>
    public double CpuFp16Slowdown { get; init; }
    public double CpuBf16Slowdown { get; init; }
    /// <summary>
    /// True where this CPU lacks the fp16 / bf16 instructions libtorch's fast kernels need, so the engine computes
    /// convolutions, Linear layers and attention in that precision with fp32 arithmetic (fp32 speed, low-precision
    /// results) instead of running the slow kernels.
    /// </summary>
    public bool CpuFp16Emulated { get; init; }
    public bool CpuBf16Emulated { get; init; }

    /// <summary>The list view's CpuHalfPrecision line: both factors, then what happens to each precision on this CPU.</summary>
    public string DescribeHalfPrecision()
    {
        var kinds = new[] { (Name: "fp16", Factor: CpuFp16Slowdown, Emulated: CpuFp16Emulated), (Name: "bf16", Factor: CpuBf16Slowdown, Emulated: CpuBf16Emulated) };
        string Names(Func<(string Name, double Factor, bool Emulated), bool> which) => string.Join(" and ", kinds.Where(which).Select(k => k.Name));
        var text = new System.Text.StringBuilder($"fp16 {CpuFp16Slowdown:N1}x, bf16 {CpuBf16Slowdown:N1}x the fp32 time in libtorch's kernels");
        if (Names(k => k.Emulated) is { Length: > 0 } emulated) text.Append($"; {emulated} computed in fp32 arithmetic here (no instructions for it), at fp32 speed");
        if (Names(k => !k.Emulated && k.Factor <= Engine.LowPrecisionOnCpu.SlowFactor) is { Length: > 0 } fast) text.Append($"; {fast} runs in libtorch's kernels");
        if (Names(k => !k.Emulated && k.Factor > Engine.LowPrecisionOnCpu.SlowFactor) is { Length: > 0 } slow) text.Append($"; {slow}: fallback kernels, train and generate in fp32 here");
        return text.ToString();
    }
    public string PowerShellVersion { get; init; } = "";
    public string OperatingSystem { get; init; } = "";
}
