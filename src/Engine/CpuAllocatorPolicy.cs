using System.Runtime.InteropServices;

namespace DreamBooth.Engine;

/// <summary>
/// How libtorch's CPU tensors get memory on Linux (glibc malloc underneath).
/// <para>On import: libtorch backs its blocks of 2 MiB and more with transparent huge pages
/// (<c>THP_MEM_ALLOC_ENABLE</c>, read once at libtorch's first allocation), which cuts the page faults of fresh
/// memory several-fold.</para>
/// <para>For the memory-saving training recipes (<see cref="UseLowMemoryHeap"/>): glibc raises its mmap threshold up
/// to 32 MiB after the first large free, so from then on most activations and gradients (a few MiB to tens of MiB)
/// live in the heap, whose freed holes stay resident; a full-size step then peaks 1–2 GB above the memory it uses.
/// Fixing the threshold at 2 MiB maps large blocks on their own and returns them when freed. It costs a few percent
/// of step time (fresh pages are zeroed by the kernel), so plain runs keep glibc's default.</para>
/// <para>Process-wide. Variables the user set (<c>MALLOC_MMAP_THRESHOLD_</c>, <c>THP_MEM_ALLOC_ENABLE</c>) win;
/// <c>DREAMBOOTH_CPU_ALLOCATOR=default</c> leaves everything alone. Nothing happens on Windows, macOS or non-glibc
/// systems.</para>
/// </summary>
public static class CpuAllocatorPolicy
{
    const int M_MMAP_THRESHOLD = -3;
    public const int LowMemoryMmapThreshold = 2 << 20;
    const int GlibcDynamicMaximum = 32 << 20;   // where glibc's own adjustment tops out on 64-bit systems
    static int s_applied;
    static bool s_lowMemory, s_available = true;
    static string s_hugePages = "not applied";

    /// <summary>What the policy currently does, for Get-DreamBoothEnvironment.</summary>
    public static string Description => !OperatingSystem.IsLinux() ? "system default"
        : Disabled ? "system default (DREAMBOOTH_CPU_ALLOCATOR=default)"
        : !s_available ? "system default (not glibc)"
        : s_hugePages + "; " + (Environment.GetEnvironmentVariable("MALLOC_MMAP_THRESHOLD_") is string set
            ? $"glibc mmap threshold {set} bytes (MALLOC_MMAP_THRESHOLD_ set by the environment)"
            : s_lowMemory ? "glibc mmap threshold fixed at 2 MiB (memory-saving recipe)" : "glibc heap default");

    static bool Disabled => string.Equals(Environment.GetEnvironmentVariable("DREAMBOOTH_CPU_ALLOCATOR"), "default", StringComparison.OrdinalIgnoreCase);

    /// <summary>Once, before the first tensor exists (the module calls it on import).</summary>
    public static void Apply()
    {
        if (Interlocked.Exchange(ref s_applied, 1) != 0 || !OperatingSystem.IsLinux() || Disabled) return;
        try
        {
            if (CEnvironment.Get("THP_MEM_ALLOC_ENABLE") is not null) s_hugePages = "THP_MEM_ALLOC_ENABLE set by the environment";
            else if (CEnvironment.SetIfUnset("THP_MEM_ALLOC_ENABLE", "1")) s_hugePages = "libtorch blocks ≥ 2 MiB on transparent huge pages";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { s_available = false; }
    }

    /// <summary>
    /// Memory-saving recipes (checkpointing, selective or whole-block; 8-bit Adam; offload) return freed blocks ≥ 2 MiB to the system; other
    /// runs go back to glibc's heap behaviour (its dynamic threshold's maximum) if an earlier run changed it.
    /// </summary>
    public static void UseLowMemoryHeap(bool lowMemory)
    {
        if (!OperatingSystem.IsLinux() || Disabled || !s_available || Environment.GetEnvironmentVariable("MALLOC_MMAP_THRESHOLD_") is not null) return;
        if (lowMemory == s_lowMemory) return;
        try
        {
            if (mallopt(M_MMAP_THRESHOLD, lowMemory ? LowMemoryMmapThreshold : GlibcDynamicMaximum) == 1) s_lowMemory = lowMemory;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { s_available = false; }
    }

    [DllImport("libc.so.6")] static extern int mallopt(int param, int value);
}
