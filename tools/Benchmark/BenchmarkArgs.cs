namespace DreamBooth.Benchmark;

/// <summary>The benchmarks' command lines: <c>--flag value</c> options, switches, and the positional arguments around them.</summary>
static class BenchmarkArgs
{
    /// <summary>The value after <paramref name="flag"/>, or <paramref name="fallback"/> where it is not given.</summary>
    public static string Option(string[] args, string flag, string fallback)
    {
        int i = Array.IndexOf(args, flag);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
    }

    /// <summary>The arguments that are neither a <c>--</c> flag nor the value of one of <paramref name="valueFlags"/>.</summary>
    public static string[] Positional(string[] args, params string[] valueFlags) =>
        args.Where((a, i) => !a.StartsWith("--") && (i == 0 || !valueFlags.Contains(args[i - 1]))).ToArray();
}
