using System.Diagnostics;
using DreamBooth.Engine.IO;
using DreamBooth.Engine.Models.Autoencoders;
using DreamBooth.Engine.Models.TextEncoders;
using DreamBooth.Engine.Models.Unets;
using DreamBooth.Engine.Training;
using TorchSharp;

namespace DreamBooth.Benchmark;

/// <summary>
/// Full-size benchmarks (SD-1.4-shaped models with random weights).
/// train-sd14 RECIPE [steps] [workdir]: DreamBooth steps at 512 px, batch 1 + prior (UNet batch 2), through
/// DreamBoothTrainer.Train, on a random-weight SD-1.4 pipeline written once to WORKDIR/sd14-random (~5 GB).
/// Run each recipe in its own process so VmHWM is that recipe's peak.
/// </summary>
public static class Benchmarks
{
    public static readonly string[] Recipes = { "fp32", "checkpointing", "blocks", "selective", "8bit", "16GB", "12GB", "8GB", "bf16", "fp16" };

    public static int Run(string name, string repo, string[] args)
    {
        if (name == "generate-sd14") return GenerateSd14(repo, args);
        if (name == "generate-memory-sd14") return GenerateMemorySd14(repo, args);
        if (name != "train-sd14") { Console.Error.WriteLine($"unknown benchmark '{name}'"); return 2; }
        // --no-prior: batch 1 without prior preservation, the configuration of the diffusers anchor (UNet batch 1).
        bool prior = !args.Contains("--no-prior");
        // --selective / --blocks: a memory profile with that checkpointing mode instead of auto (to measure the trade).
        string? mode = args.Contains("--selective") ? "selective" : args.Contains("--blocks") ? "blocks" : null;
        // --tf32: -AllowTf32 (fp32 matrix products in TF32 on CUDA).
        bool tf32 = args.Contains("--tf32");
        // --deterministic: -Deterministic (libtorch's deterministic algorithms; what they cost on a GPU).
        bool deterministic = args.Contains("--deterministic");
        // --encode-as-they-come: the first epoch VAE-encodes each image when it comes, as diffusers' step does (the
        // trainer otherwise encodes images with one view before step 1 and frees the VAE).
        lazyEncode = args.Contains("--encode-as-they-come");
        // --device cpu|cuda|cuda:N (default auto: cuda:0 where the CUDA backend finds a GPU, else cpu).
        string device = BenchmarkArgs.Option(args, "--device", "auto");
        args = BenchmarkArgs.Positional(args, "--device");
        string recipe = args.Length > 0 ? args[0] : "fp32";
        int steps = args.Length > 1 ? int.Parse(args[1]) : 3;
        string work = args.Length > 2 ? args[2] : Path.Combine(Path.GetTempPath(), "dreambooth-bench");
        if (recipe == "all" || recipe.Contains(','))
            return RunEach(recipe == "all" ? IssueRecipes : recipe.Split(','), steps, work, prior, device, mode, tf32, deterministic);
        return TrainSd14(repo, recipe, steps, work, prior, device, mode, tf32, deterministic);
    }

    /// <summary>The recipes the benchmark table must cover: plain fp32 AdamW, checkpointing, 8-bit Adam, the 12 GB recipe, bf16.</summary>
    public static readonly string[] IssueRecipes = { "fp32", "checkpointing", "8bit", "12GB", "bf16" };

    const string SummaryPrefix = "summary\t";
    static bool lazyEncode;

    /// <summary>
    /// train-sd14 all|R1,R2,… : each recipe in a child process of its own (so that its peak RSS is its own), one after
    /// another, then one table of them all.
    /// </summary>
    static int RunEach(string[] recipes, int steps, string work, bool prior, string device, string? mode, bool tf32, bool deterministic)
    {
        var unknown = recipes.Where(r => !Recipes.Contains(r)).ToArray();
        if (unknown.Length > 0) { Console.Error.WriteLine($"unknown recipe(s) {string.Join(", ", unknown)}; recipes: {string.Join(", ", Recipes)}"); return 2; }
        var rows = new List<string[]>();
        foreach (var recipe in recipes)
        {
            var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
            // Under "dotnet DreamBooth.Benchmark.dll" the host is dotnet and the first argument the assembly.
            if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") start.ArgumentList.Add(typeof(Benchmarks).Assembly.Location);
            foreach (var a in new[] { "train-sd14", recipe, steps.ToString(), work }) start.ArgumentList.Add(a);
            if (!prior) start.ArgumentList.Add("--no-prior");
            if (mode is not null) start.ArgumentList.Add("--" + mode);
            if (tf32) start.ArgumentList.Add("--tf32");
            if (deterministic) start.ArgumentList.Add("--deterministic");
            if (lazyEncode) start.ArgumentList.Add("--encode-as-they-come");
            start.ArgumentList.Add("--device"); start.ArgumentList.Add(device);
            Console.WriteLine($"== {recipe}");
            using var child = Process.Start(start)!;
            string? summary = null;
            for (string? line; (line = child.StandardOutput.ReadLine()) is not null;)
            {
                if (line.StartsWith(SummaryPrefix)) summary = line[SummaryPrefix.Length..];
                else Console.WriteLine("   " + line);
            }
            child.WaitForExit();
            rows.Add(summary is null ? new[] { recipe, $"failed (exit code {child.ExitCode})", "", "", "", "", "" } : summary.Split('\t'));
        }
        Console.WriteLine();
        Console.WriteLine($"train-sd14, SD-1.4 shape, 512 px, batch 1{(prior ? " + prior (UNet batch 2)" : ", no prior")}, {steps} steps per recipe, each in its own process; s/step: median of the steps after the first");
        Console.WriteLine("| recipe | s/step wall | CPU s/step | peak RSS GB | peak device memory | optimizer state | loss at step 2 |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        foreach (var r in rows) Console.WriteLine("| " + string.Join(" | ", r) + " |");
        return rows.Any(r => r.Length < 7 || r[1].StartsWith("failed")) ? 1 : 0;
    }

    sealed class StopAfterSteps : Exception { }

    static int TrainSd14(string repo, string recipe, int steps, string work, bool prior, string device, string? mode, bool tf32, bool deterministic)
    {
        var pipeline = EnsureRandomPipeline(repo, Path.Combine(work, "sd14-random"));
        var (instances, classes) = EnsureImages(work);
        var output = Path.Combine(work, "out-" + recipe + "-" + Environment.ProcessId);
        var o = new DreamBoothOptions
        {
            Model = pipeline, InstanceDataDirectory = instances, InstancePrompt = "a photo of sks dog",
            ClassDataDirectory = prior ? classes : null, ClassPrompt = prior ? "a photo of dog" : null, WithPriorPreservation = prior, NumClassImages = 4,
            Resolution = 512, TrainBatchSize = 1, MaxTrainSteps = steps + 1, CheckpointingSteps = 100000,
            OutputDirectory = output, Device = device, Seed = 0, AllowTf32 = tf32, Deterministic = deterministic,
        };
        o = recipe switch
        {
            "fp32" => o,
            "checkpointing" => o with { GradientCheckpointing = true },   // as shipped: auto (selective on the CPU, blocks on a GPU)
            "blocks" => o with { GradientCheckpointing = true, GradientCheckpointingMode = "blocks" },
            "selective" => o with { GradientCheckpointing = true, GradientCheckpointingMode = "selective" },
            "8bit" => o with { Use8BitAdam = true },
            "16GB" or "12GB" or "8GB" => mode is null ? Apply(o, recipe) : Apply(o, recipe) with { GradientCheckpointingMode = mode },
            "bf16" => o with { MixedPrecision = "bf16" },
            "fp16" => o with { MixedPrecision = "fp16" },
            _ => throw new ArgumentException($"recipe must be one of {string.Join(", ", Recipes)}"),
        };

        var marks = new List<double>();
        var clock = Stopwatch.StartNew();
        var cpu = new List<double>();
        string stateLine = "";
        var losses = new List<double>();
        var events = new TrainingEvents
        {
            Log = line =>
            {
                Console.WriteLine("  " + line);
                if (line.StartsWith("***** Running training")) { marks.Add(clock.Elapsed.TotalSeconds); cpu.Add(Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds); }
                if (line.StartsWith("Optimizer state")) stateLine = line;
            },
            Warning = w => Console.WriteLine("  WARNING: " + w),
            EncodeViewsAsTheyCome = lazyEncode,
            Progress = p =>
            {
                if (p.Phase != "training") return;
                marks.Add(clock.Elapsed.TotalSeconds);
                cpu.Add(Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds);
                losses.Add(p.Loss ?? double.NaN);
                Console.WriteLine($"  step {p.Step}: {marks[^1] - marks[^2]:F2} s wall, {cpu[^1] - cpu[^2]:F2} s CPU, loss {p.Loss:F4}, peak RSS {Program.PeakRssGB():F2} GB, {Program.MinorFaults() / 1e6:F2} M minor faults so far");
                if (p.Step >= steps) throw new StopAfterSteps();   // no final save: only steps are measured
            },
        };
        var onDevice = DreamBooth.Engine.DeviceSelection.Parse(device);
        using var deviceMemory = DreamBooth.Engine.DeviceMemoryMonitor.Start(onDevice);
        // On a thread of its own, as the cmdlets run it (glibc gives such a thread its own malloc arena).
        var worker = new Thread(() =>
        {
            try { DreamBoothTrainer.Train(o, events, CancellationToken.None); }
            catch (StopAfterSteps) { }
        }, 16 << 20);
        worker.Start();
        worker.Join();
        if (Directory.Exists(output)) Directory.Delete(output, true);

        // Step 1 is a warm-up (allocations, first-touch of optimizer state). The first epoch (4 dataset items at batch 1)
        // also VAE-encodes each image; later epochs reuse the latent distributions (LatentCache).
        const int epochSteps = 4;
        var wallSteps = marks.Zip(marks.Skip(1), (a, b) => b - a).ToList();
        var cpuSteps = cpu.Zip(cpu.Skip(1), (a, b) => b - a).ToList();
        int skip = wallSteps.Count > 1 ? 1 : 0;
        string Row(string what, int from, int to) => to <= from ? "" :
            $"| {recipe}{(prior ? "" : " (batch 1, no prior)")}, {what} | {Median(wallSteps.Skip(from).Take(to - from)):F2} | {Median(cpuSteps.Skip(from).Take(to - from)):F2} | {to - from} |";
        Console.WriteLine("| recipe, steps | s/step wall (median) | CPU s/step | steps measured |");
        Console.WriteLine(Row(skip == 0 ? "step 1 (warm-up)" : "first epoch, steps 2-" + Math.Min(epochSteps, wallSteps.Count)
            + (lazyEncode ? " (each encodes its images)" : " (images encoded before step 1)"), skip, Math.Min(epochSteps, wallSteps.Count)));
        Console.WriteLine(Row($"later epochs, steps {epochSteps + 1}-{wallSteps.Count} (latents reused)", epochSteps, wallSteps.Count));
        string devicePeak = deviceMemory.PeakBytes is long bytes ? $"{bytes / 1073741824.0:F2} GB" : deviceMemory.Source;
        Console.WriteLine(SummaryPrefix + string.Join('\t', recipe + (mode is null ? "" : " --" + mode) + (tf32 ? " --tf32" : "") + (deterministic ? " --deterministic" : ""),
            $"{Median(wallSteps.Skip(skip)):F2}", $"{Median(cpuSteps.Skip(skip)):F2}", $"{Program.PeakRssGB():F2}", devicePeak,
            stateLine.Replace("Optimizer state: ", ""), losses.Count > 1 ? $"{losses[1]:F4}" : "n/a"));
        Console.WriteLine($"peak RSS {Program.PeakRssGB():F2} GB; peak device memory {(deviceMemory.PeakBytes is long peak ? $"{peak / 1073741824.0:F2} GB, {deviceMemory.Source}" : deviceMemory.Source)}; device {onDevice}; optimizer state {stateLine.Replace("Optimizer state: ", "")}; threads {torch.get_num_threads()}; allocator: {DreamBooth.Engine.CpuAllocatorPolicy.Description}{(onDevice.type == DeviceType.CUDA ? "; CUDA allocator: " + DreamBooth.Engine.CudaAllocatorPolicy.Description : "")}");
        return 0;
    }

    /// <summary>
    /// generate-sd14 [steps] [workdir] [--device D] [--dtype fp32|fp16|bf16]: text-to-image at 512 px with CFG on the
    /// random-weight SD-1.4 pipeline, DPM-Solver++; one warm-up image, then the median of three.
    /// </summary>
    static int GenerateSd14(string repo, string[] args)
    {
        var device = DreamBooth.Engine.DeviceSelection.Parse(BenchmarkArgs.Option(args, "--device", "auto"));
        var dtype = DreamBooth.Engine.DeviceSelection.ParsePrecision(BenchmarkArgs.Option(args, "--dtype", "auto"), device);
        var rest = BenchmarkArgs.Positional(args, "--device", "--dtype");
        int steps = rest.Length > 0 ? int.Parse(rest[0]) : 25;
        string work = rest.Length > 1 ? rest[1] : Path.Combine(Path.GetTempPath(), "dreambooth-bench");
        var folder = EnsureRandomPipeline(repo, Path.Combine(work, "sd14-random"));
        using var deviceMemory = DreamBooth.Engine.DeviceMemoryMonitor.Start(device);
        using var pipe = DreamBooth.Engine.Pipelines.StableDiffusionPipeline.FromPretrained(folder, dtype, device);
        var options = new DreamBooth.Engine.Pipelines.TextToImageOptions { Prompts = new[] { "a photo of sks dog" }, Steps = steps, Seed = 0, Scheduler = "DPMSolverMultistepScheduler", Width = 512, Height = 512 };
        var times = new List<double>();
        for (int i = 0; i < 4; i++)
        {
            var sw = Stopwatch.StartNew();
            foreach (var img in pipe.Generate(options)) img.Pixels.Dispose();
            times.Add(sw.Elapsed.TotalSeconds);
            Console.WriteLine($"  image {i + 1}: {times[^1]:F2} s");
        }
        string peak = deviceMemory.PeakBytes is long b ? $"{b / 1073741824.0:F2} GB ({deviceMemory.Source})" : deviceMemory.Source;
        Program.Report($"SD-1.4 shape, 512 px, {steps} steps DPM-Solver++, CFG 7.5, {dtype} on {device} (median of 3 after a warm-up); peak device memory {peak}", times.Skip(1).ToList());
        return 0;
    }

    /// <summary>
    /// generate-memory-sd14 WIDTH HEIGHT [batch=1] [--init] [--dtype T] [workdir]: what one generation (1 DDIM step, CFG)
    /// adds to host memory above the loaded pipeline on the CPU: the peak RSS after the load (VmHWM reset) minus the RSS
    /// before it; with --init as image to image from a WIDTH×HEIGHT picture. Run each size in its own process.
    /// </summary>
    static int GenerateMemorySd14(string repo, string[] args)
    {
        var dtype = DreamBooth.Engine.DeviceSelection.ParsePrecision(BenchmarkArgs.Option(args, "--dtype", "fp32"), torch.CPU);
        bool init = args.Contains("--init");
        var rest = BenchmarkArgs.Positional(args, "--dtype").Where(a => a != "--init").ToArray();
        int width = int.Parse(rest[0]), height = int.Parse(rest[1]), batch = rest.Length > 2 ? int.Parse(rest[2]) : 1;
        string work = rest.Length > 3 ? rest[3] : Path.Combine(Path.GetTempPath(), "dreambooth-bench");
        var folder = EnsureRandomPipeline(repo, Path.Combine(work, "sd14-random"));
        using var pipe = DreamBooth.Engine.Pipelines.StableDiffusionPipeline.FromPretrained(folder, dtype, torch.CPU);
        string? initPng = null;
        if (init)
        {
            initPng = Path.Combine(work, $"init-{width}x{height}.png");
            using var noise = torch.rand(3, height, width);
            DreamBooth.Engine.IO.PngWriter.Save(noise, initPng, new Dictionary<string, string>());
        }
        GC.Collect();
        double untrimmed = Program.RssGB();
        // Loading in another precision than the file's frees its conversion buffers into glibc's heap, which keeps them
        // (RSS) and hands them out again: without the trim, a generation that reuses them seems to add nothing.
        malloc_trim(0);
        File.WriteAllText("/proc/self/clear_refs", "5");   // VmHWM := current RSS
        double before = Program.PeakRssGB();
        Console.WriteLine($"RSS after load {untrimmed:F2} GB, after malloc_trim {before:F2} GB; " +
            string.Join(", ", File.ReadLines("/proc/self/status").Where(l => l.StartsWith("RssAnon") || l.StartsWith("RssFile"))));
        var options = new DreamBooth.Engine.Pipelines.TextToImageOptions
        {
            Prompts = new[] { "a photo of sks dog" }, Steps = 1, Seed = 0, Scheduler = "DDIMScheduler", Width = width, Height = height,
            ImagesPerPrompt = batch, BatchSize = batch, InitImage = initPng, Strength = 1.0,
        };
        var sw = Stopwatch.StartNew();
        foreach (var img in pipe.Generate(options)) img.Pixels.Dispose();
        Console.WriteLine($"| {width}x{height} | batch {batch} | {(init ? "image to image" : "text to image")} | {dtype} | RSS after load {before:F2} GB | peak {Program.PeakRssGB():F2} GB | added {Program.PeakRssGB() - before:F2} GB | {sw.Elapsed.TotalSeconds:F1} s |");
        return 0;
    }

    [System.Runtime.InteropServices.DllImport("libc.so.6")] static extern int malloc_trim(nuint pad);

    static double Median(IEnumerable<double> values)
    {
        var v = values.OrderBy(x => x).ToList();
        return v.Count == 0 ? double.NaN : v.Count % 2 == 1 ? v[v.Count / 2] : (v[v.Count / 2 - 1] + v[v.Count / 2]) / 2;
    }

    static DreamBoothOptions Apply(DreamBoothOptions o, string profile)
    {
        var (applied, changes) = MemoryProfiles.Apply(o, profile);
        foreach (var c in changes) Console.WriteLine("  profile " + profile + ": " + c);
        return applied;
    }

    /// <summary>A diffusers folder with SD-1.4 configs and random weights (tokenizer and scheduler from the tiny fixture: same vocabulary and schedule).</summary>
    internal static string EnsureRandomPipeline(string repo, string dir)
    {
        if (File.Exists(Path.Combine(dir, "model_index.json"))) return dir;
        var configs = Path.Combine(repo, "tests/fixtures/configs/sd-v1-4");
        var tiny = Path.Combine(repo, "tests/fixtures/tiny-sd");
        Console.WriteLine($"writing random SD-1.4 pipeline to {dir} (once)");
        Directory.CreateDirectory(dir);
        torch.manual_seed(0);
        using (var unet = UNet2DConditionModel.FromConfig(UNet2DConditionConfig.Load(Path.Combine(configs, "unet", "config.json"))))
            unet.SavePretrained(Path.Combine(dir, "unet"));
        using (var vae = AutoencoderKL.FromConfig(AutoencoderKLConfig.Load(Path.Combine(configs, "vae", "config.json"))))
            vae.SavePretrained(Path.Combine(dir, "vae"));
        using (var te = ClipTextModel.FromConfig(ClipTextConfig.Load(Path.Combine(configs, "text_encoder_config.json"))))
            te.SavePretrained(Path.Combine(dir, "text_encoder"));
        foreach (var component in new[] { "tokenizer", "scheduler" })
        {
            Directory.CreateDirectory(Path.Combine(dir, component));
            foreach (var f in Directory.EnumerateFiles(Path.Combine(tiny, component))) File.Copy(f, Path.Combine(dir, component, Path.GetFileName(f)), true);
        }
        File.Copy(Path.Combine(tiny, "model_index.json"), Path.Combine(dir, "model_index.json"), true);   // last: marks the folder complete
        return dir;
    }

    static (string Instances, string Classes) EnsureImages(string work)
    {
        var instances = Path.Combine(work, "instance");
        var classes = Path.Combine(work, "class");
        var g = new torch.Generator(0);
        foreach (var d in new[] { instances, classes })
        {
            Directory.CreateDirectory(d);
            for (int i = 0; i < 4; i++)
            {
                var f = Path.Combine(d, $"{i}.png");
                if (!File.Exists(f)) { using var img = torch.rand(new long[] { 3, 512, 512 }, generator: g); PngWriter.Save(img, f); }
            }
        }
        return (instances, classes);
    }
}
