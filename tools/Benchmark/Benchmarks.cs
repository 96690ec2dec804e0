namespace DreamBooth.Benchmark;

/// <summary>Full-size benchmarks (SD-1.4-shaped models with random weights).</summary>
public static class Benchmarks
{
    public static int Run(string name, string repo, string[] args)
    {
        Console.Error.WriteLine($"unknown benchmark '{name}'");
        return 2;
    }
}
