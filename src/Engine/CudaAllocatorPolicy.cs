namespace DreamBooth.Engine;

/// <summary>
/// How libtorch's CUDA caching allocator gets device memory. On Linux, on import, it asks for expandable segments
/// (<c>PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True</c>, read once when CUDA starts): blocks grow in place instead
/// of the allocator reserving a new segment for each size it meets, so less reserved memory sits unused. Measured on
/// an H100 (docs/benchmarks.md, eighth pass): the 12GB recipe's device peak 12.34 → 11.65 GiB, the difference between
/// fitting a 12 GB card or not. A value the user set wins; <c>DREAMBOOTH_CUDA_ALLOCATOR=default</c> leaves libtorch's
/// default. Windows has no expandable segments in libtorch, so nothing happens there.
/// </summary>
public static class CudaAllocatorPolicy
{
    public const string Variable = "PYTORCH_CUDA_ALLOC_CONF";
    public const string ExpandableSegments = "expandable_segments:True";
    static int s_applied;
    static string s_description = "libtorch default";

    /// <summary>What the policy did, for Get-DreamBoothEnvironment.</summary>
    public static string Description => s_description;

    static bool Disabled => string.Equals(Environment.GetEnvironmentVariable("DREAMBOOTH_CUDA_ALLOCATOR"), "default", StringComparison.OrdinalIgnoreCase);

    /// <summary>Once, before CUDA starts (the module calls it on import).</summary>
    public static void Apply()
    {
        if (Interlocked.Exchange(ref s_applied, 1) != 0) return;
        if (!OperatingSystem.IsLinux()) { s_description = "libtorch default (no expandable segments on this system)"; return; }
        if (Disabled) { s_description = "libtorch default (DREAMBOOTH_CUDA_ALLOCATOR=default)"; return; }
        try
        {
            if (CEnvironment.Get(Variable) is string set) s_description = $"{Variable}={set} (set by the environment)";
            else if (CEnvironment.SetIfUnset(Variable, ExpandableSegments)) s_description = $"{Variable}={ExpandableSegments}";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { s_description = "libtorch default (not glibc)"; }
    }

    /// <summary>The variable as libtorch will read it (the C environment), or null.</summary>
    public static string? NativeValue
    {
        get
        {
            if (!OperatingSystem.IsLinux()) return null;
            try { return CEnvironment.Get(Variable); }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return null; }
        }
    }
}
