using System.Runtime.Intrinsics.X86;

namespace DreamBooth.Engine;

/// <summary>
/// Which code path Intel oneMKL, inside libtorch's x86 builds, runs the matrix products on (Linear layers, attention,
/// batched products). MKL picks it from the CPU, and on a processor that is not Intel's it takes its generic path
/// even where AVX2 and FMA are there: on an AMD EPYC (Zen 3) here, the UNet's Linear shapes ran at 67–124 GFLOP/s,
/// and at 118–159 GFLOP/s on the AVX2 path. MKL's documented Conditional Numerical Reproducibility setting
/// <c>MKL_CBWR=AVX2</c> selects that path (and keeps results reproducible from run to run); MKL reads it at its first call.
/// <para>On import, on a non-Intel x86-64 CPU with AVX2 and FMA, on Linux, this sets <c>MKL_CBWR=AVX2</c> in the C
/// environment unless the variable is set. Intel CPUs keep MKL's own choice (which may be AVX-512). A value you set wins;
/// <c>DREAMBOOTH_MKL=default</c> leaves everything alone. Not applied on Windows (untested there: set
/// <c>MKL_CBWR=AVX2</c> before starting pwsh).</para>
/// </summary>
public static class MklCodePathPolicy
{
    static int s_applied;
    static string s_description = "not applied";

    /// <summary>What the policy did, for Get-DreamBoothEnvironment.</summary>
    public static string Description => s_description;

    /// <summary>The CPU vendor string from CPUID (e.g. GenuineIntel, AuthenticAMD); null off x86.</summary>
    public static string? CpuVendor
    {
        get
        {
            if (!X86Base.IsSupported) return null;
            var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
            Span<byte> bytes = stackalloc byte[12];
            BitConverter.TryWriteBytes(bytes[..4], ebx);
            BitConverter.TryWriteBytes(bytes[4..8], edx);
            BitConverter.TryWriteBytes(bytes[8..], ecx);
            return System.Text.Encoding.ASCII.GetString(bytes);
        }
    }

    /// <summary>Whether MKL would take its generic path although the CPU has the AVX2 path's instructions.</summary>
    public static bool NeedsAvx2Branch(string? vendor, bool avx2, bool fma) => vendor is not null && vendor != "GenuineIntel" && avx2 && fma;

    /// <summary>Once, before libtorch's first matrix product (the module calls it on import).</summary>
    public static void Apply()
    {
        if (Interlocked.Exchange(ref s_applied, 1) != 0) return;
        if (string.Equals(Environment.GetEnvironmentVariable("DREAMBOOTH_MKL"), "default", StringComparison.OrdinalIgnoreCase))
        { s_description = "MKL's own choice (DREAMBOOTH_MKL=default)"; return; }
        string? vendor = CpuVendor;
        if (!NeedsAvx2Branch(vendor, Avx2.IsSupported, Fma.IsSupported))
        { s_description = vendor is null ? "MKL's own choice (not x86)" : $"MKL's own choice ({vendor})"; return; }
        if (!OperatingSystem.IsLinux()) { s_description = $"MKL's own choice ({vendor}; set MKL_CBWR=AVX2 before starting pwsh for MKL's AVX2 path)"; return; }
        try
        {
            if (CEnvironment.Get("MKL_CBWR") is string set) s_description = $"MKL_CBWR={set} (set by the environment)";
            else if (CEnvironment.SetIfUnset("MKL_CBWR", "AVX2")) s_description = $"MKL's AVX2 path (MKL_CBWR=AVX2; {vendor} CPU)";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { s_description = "MKL's own choice (not glibc)"; }
    }
}
