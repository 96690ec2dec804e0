using System.Diagnostics;
using DreamBooth.Engine.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Benchmark;

/// <summary>
/// dotnet run --project tools/Benchmark -- &lt;benchmark&gt; [options]. Each benchmark prints a table row per measurement:
/// median seconds and peak process memory (VmHWM). See docs/benchmarks.md for results.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length == 0) { Console.WriteLine("benchmarks: pipeline-tiny | load-sd14 [empty|random-init] [fp32|fp16] [workdir] | generate-sd14 [steps] [workdir] [--device D] [--dtype T] | generate-memory-sd14 W H [batch] [--init] [--dtype T] [workdir] | cuda-check [device] [workdir] [recipes] | offload-sd14 [workdir] [--device D] | checkpoint-ab-sd14 [rounds] [workdir] [--prior] [--heap-as-trainer] [--with-step] [--device D] | parity-fullsize DIR | train-sd14 RECIPE|all|R1,R2 [steps] [workdir] [--no-prior] [--device cpu|cuda|cuda:N] [--selective|--blocks] [--tf32] [--deterministic] (recipes: fp32 checkpointing blocks selective 8bit 16GB 12GB 8GB bf16 fp16; all = fp32 checkpointing 8bit 12GB bf16, each in its own process, one table)"); return 2; }
        DreamBooth.Engine.ProcessPolicies.Apply();   // as the module does on import
        torch.set_num_threads(Environment.ProcessorCount);
        var repo = FindRepo();
        return args[0] switch
        {
            "pipeline-tiny" => PipelineTiny(repo, args.Skip(1).ToArray()),
            "profile-tiny" => Profile.Tiny(repo),
            "load-sd14" => LoadSd14.Run(repo, args.Skip(1).ToArray()),
            "profile-ops" => ProfileOps.Run(),
            "profile-ops-sd14" => ProfileOpsSd14.Run(),
            "profile-gemm" => ProfileGemm.Run(),
            "profile-adam8" => ProfileAdam8.Run(args.Skip(1).ToArray()),
            "profile-vae-sd14" => ProfileVae.Run(args.Skip(1).ToArray()),
            "profile-step-sd14" => ProfileStep.Run(args.Skip(1).ToArray()),
            "profile-attention-sd14" => ProfileAttention.Run(args.Skip(1).ToArray()),
            "train-sd14-lora" => LoRABenchmark.Run(repo, args.Skip(1).ToArray()),   // LoRA (issue 8)
            "cuda-check" => CudaCheck.Run(repo, args.Skip(1).ToArray()),
            "offload-sd14" => GradientOffloadSd14.Run(repo, args.Skip(1).ToArray()),
            "checkpoint-ab-sd14" => CheckpointAbSd14.Run(repo, args.Skip(1).ToArray()),
            "parity-fullsize" => ParityFullsize.Run(args.Skip(1).ToArray()),
            _ => Benchmarks.Run(args[0], repo, args.Skip(1).ToArray()),
        };
    }

    static int PipelineTiny(string repo, string[] args)
    {
        string scheduler = args.Length > 0 ? args[0] : "PNDMScheduler";
        int steps = args.Length > 1 ? int.Parse(args[1]) : 5;
        using var pipe = StableDiffusionPipeline.FromPretrained(Path.Combine(repo, "tests/fixtures/tiny-sd"), ScalarType.Float32, torch.CPU);
        var options = new TextToImageOptions { Prompts = new[] { "a photo of sks dog" }, Steps = steps, Seed = 0, Scheduler = scheduler, Width = 64, Height = 64 };
        var times = new List<double>();
        for (int i = 0; i < 7; i++)
        {
            var sw = Stopwatch.StartNew();
            var img = pipe.Generate(options);
            times.Add(sw.Elapsed.TotalSeconds);
            foreach (var x in img) x.Pixels.Dispose();
        }
        Report($"tiny pipeline 64x64, {scheduler}, {steps} steps, CFG 7.5 (warm, median of 6)", times.Skip(1).ToList());
        return 0;
    }

    public static void Report(string what, IReadOnlyList<double> seconds)
    {
        var sorted = seconds.OrderBy(x => x).ToList();
        double median = sorted[sorted.Count / 2];
        Console.WriteLine($"| {what} | {median:F3} s | min {sorted[0]:F3} s | peak RSS {PeakRssGB():F2} GB |");
    }

    /// <summary>The process's resident memory now (VmRSS), GiB.</summary>
    public static double RssGB() => StatusGB("VmRSS:") ?? double.NaN;

    public static double PeakRssGB() => StatusGB("VmHWM:") ?? Process.GetCurrentProcess().PeakWorkingSet64 / 1073741824.0;

    /// <summary>A kB field of /proc/self/status in GiB; null where there is none (not Linux).</summary>
    static double? StatusGB(string field)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith(field)) return long.Parse(line.Split(new[] { ' ', '\t' }, StringSplitOptions.RemoveEmptyEntries)[1]) / 1048576.0;
        }
        catch { }
        return null;
    }

    /// <summary>(user s, system s, minor faults) of this process so far, from /proc/self/stat; faults −1 where unavailable.</summary>
    public static (double User, double Sys, long Faults) CpuAndFaults()
    {
        try
        {
            var stat = File.ReadAllText("/proc/self/stat");
            var f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return (long.Parse(f[11]) / 100.0, long.Parse(f[12]) / 100.0, long.Parse(f[7]));   // utime, stime (ticks), minflt
        }
        catch { return (0, 0, -1); }
    }

    /// <summary>Minor page faults of this process so far; -1 where unavailable.</summary>
    public static long MinorFaults() => CpuAndFaults().Faults;

    static string FindRepo()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "DreamBoothPS.sln"))) d = d.Parent;
        return d?.FullName ?? throw new DirectoryNotFoundException("repository root not found");
    }
}
