using System.Diagnostics;
using DreamBooth.Engine;
using DreamBooth.Engine.IO;
using DreamBooth.Engine.Pipelines;
using DreamBooth.Engine.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Benchmark;

/// <summary>
/// cuda-check [device] [workdir] [recipe,recipe…]: the engine on a CUDA device against the same work on the CPU, on the tiny fixture
/// pipeline. Text-to-image in fp32/fp16/bf16 (pixels against the CPU's fp32), each training recipe run on both
/// (losses step by step, final weights), a resume on the device, and validation images during training. Noise, timesteps and flips come from CPU generators in both runs, so they
/// see the same data; what differs is kernels (cuDNN convolutions may use TF32) and, for fp16/bf16, real low-precision
/// kernels on the GPU against the CPU's emulation. A check for a machine with a GPU (CI has none), not a test.
/// </summary>
public static class CudaCheck
{
    static readonly (string Name, Func<DreamBoothOptions, DreamBoothOptions> Apply)[] Recipes =
    {
        ("fp32", o => o),
        ("checkpointing", o => o with { GradientCheckpointing = true, GradientCheckpointingMode = "blocks" }),   // auto would differ between the devices
        ("selective", o => o with { GradientCheckpointing = true, GradientCheckpointingMode = "selective" }),
        ("8bit", o => o with { Use8BitAdam = true }),
        ("offload", o => o with { OffloadOptimizerState = true }),
        ("cache-latents", o => o with { CacheLatents = true, CenterCrop = true, RandomFlip = false }),
        ("text-encoder", o => o with { TrainTextEncoder = true }),
        ("set-grads-to-none", o => o with { SetGradsToNone = true }),
        ("fp16", o => o with { MixedPrecision = "fp16" }),
        ("bf16", o => o with { MixedPrecision = "bf16" }),
        ("lora", o => o with { LoRA = true, LearningRate = 1e-3 }),
        ("16GB", o => MemoryProfiles.Apply(o, "16GB").Options),
        ("12GB", o => MemoryProfiles.Apply(o, "12GB").Options),
        ("8GB", o => MemoryProfiles.Apply(o, "8GB").Options),
    };

    public static int Run(string repo, string[] args)
    {
        string deviceName = args.Length > 0 ? args[0] : "cuda";
        string work = args.Length > 1 ? args[1] : Path.Combine(Path.GetTempPath(), "dreambooth-cuda-check");
        var only = args.Length > 2 ? args[2].Split(',') : Recipes.Select(r => r.Name).Concat(new[] { "resume", "validation" }).ToArray();
        Console.WriteLine($"cuda available {torch.cuda.is_available()}, devices {torch.cuda.device_count()}, cuDNN {torch.cuda.is_cudnn_available()}");
        var device = DeviceSelection.Parse(deviceName);
        if (Directory.Exists(work)) Directory.Delete(work, true);
        Directory.CreateDirectory(work);
        var tiny = Path.Combine(repo, "tests/fixtures/tiny-sd");
        int failed = 0;

        // Text to image.
        using (var reference = Generate(tiny, ScalarType.Float32, torch.CPU))
            foreach (var dtype in new[] { ScalarType.Float32, ScalarType.Float16, ScalarType.BFloat16 })
                failed += Guard($"text-to-image {dtype} on {device}", () =>
                {
                    using var pixels = Generate(tiny, dtype, device);
                    double diff = (pixels - reference).abs().max().ToDouble();
                    return ($"max |pixel - CPU fp32 pixel| = {diff:G3} (pixels in [0,1])", double.IsFinite(diff));
                });

        // Schedulers that add noise in their step (drawn from the CPU generator, so the same on every device).
        foreach (var scheduler in new[] { "EulerAncestralDiscreteScheduler", "DDPMScheduler" })
            failed += Guard($"text-to-image {scheduler} on {device}", () =>
            {
                using var reference = Generate(tiny, ScalarType.Float32, torch.CPU, scheduler);
                using var pixels = Generate(tiny, ScalarType.Float32, device, scheduler);
                double diff = (pixels - reference).abs().max().ToDouble();
                return ($"max |pixel - CPU pixel| = {diff:G3}", double.IsFinite(diff) && diff < 0.05);
            });

        // Image to image and inpainting (a regular UNet and the fixture's 9-channel inpainting UNet), fp32 and fp16
        // against the CPU's fp32: the start latents come from the VAE encode and the CPU generator on both.
        var init = Path.Combine(repo, "tests/fixtures/img2img/init.png");
        var mask = Path.Combine(repo, "tests/fixtures/img2img/inpaint/mask.png");
        var inpaintUnet = Path.Combine(work, "tiny-sd-inpaint");
        foreach (var (name, model, withMask) in new[] { ("image to image", tiny, false), ("inpainting", tiny, true), ("inpainting, 9-channel UNet", inpaintUnet, true) })
            foreach (var dtype in new[] { ScalarType.Float32, ScalarType.Float16 })
                failed += Guard($"{name} {dtype} on {device}", () =>
                {
                    if (model == inpaintUnet && !Directory.Exists(inpaintUnet)) CopyInpaintPipeline(tiny, Path.Combine(repo, "tests/fixtures/img2img/inpaint/unet-inpaint"), inpaintUnet);
                    using var reference = Generate(model, ScalarType.Float32, torch.CPU, "DDIMScheduler", init, withMask ? mask : null);
                    using var pixels = Generate(model, dtype, device, "DDIMScheduler", init, withMask ? mask : null);
                    double diff = (pixels - reference).abs().max().ToDouble();
                    return ($"max |pixel - CPU fp32 pixel| = {diff:G3}, {pixels.shape[2]}x{pixels.shape[1]}", double.IsFinite(diff) && diff < (dtype == ScalarType.Float32 ? 0.01 : 0.05));
                });

        // Training: the class images once (on the CPU), then each recipe on the CPU and on the device.
        var classes = Path.Combine(work, "class");
        foreach (var (name, apply) in Recipes.Where(r => only.Contains(r.Name)))
            failed += Guard($"training {name}", () =>
            {
                var options = apply(Options(repo, tiny, classes, Path.Combine(work, name + "-cpu"), "cpu"));
                var (cpuLosses, cpuOut, _) = Train(options);
                var (losses, output, seconds) = Train(options with { OutputDirectory = Path.Combine(work, name + "-" + device.type), Device = deviceName });
                double lossDiff = cpuLosses.Zip(losses, (a, b) => Math.Abs(a - b)).DefaultIfEmpty(double.NaN).Max();
                var (weightDiff, weightScale, files) = CompareWeights(cpuOut, output);
                bool ok = losses.Count == cpuLosses.Count && losses.All(double.IsFinite) && double.IsFinite(weightDiff);
                return ($"losses {string.Join(" ", losses.Select(l => l.ToString("F4")))} (CPU {string.Join(" ", cpuLosses.Select(l => l.ToString("F4")))}), " +
                        $"max |loss diff| {lossDiff:G3}; final weights in {files} file(s): max |diff| {weightDiff:G3} (largest |weight| {weightScale:G3}); {seconds:F1} s on the device", ok);
            });
        // Resume on the device: 3 steps, stop, resume to 6 against 6 in one run (kernels may not be bitwise
        // deterministic on a GPU, so the difference is printed rather than required to be 0).
        if (only.Contains("resume"))
            failed += Guard($"resume on {device}", () =>
            {
                var o = Options(repo, tiny, classes, Path.Combine(work, "resume-full"), deviceName);
                var (full, fullOut, _) = Train(o);
                var half = DreamBoothTrainer.Train(o with { OutputDirectory = Path.Combine(work, "resume-half"), MaxTrainSteps = 3 }, new TrainingEvents(), CancellationToken.None);
                var resumed = new List<double>();
                var result = DreamBoothTrainer.Resume(half.OutputDirectory, 6, new TrainingEvents { Progress = p => { if (p.Phase == "training") resumed.Add(p.Loss ?? double.NaN); } }, CancellationToken.None);
                var (weightDiff, _, files) = CompareWeights(fullOut, result.OutputDirectory);
                double lossDiff = full.Skip(3).Zip(resumed, (a, b) => Math.Abs(a - b)).DefaultIfEmpty(double.NaN).Max();
                return ($"steps 4-6 resumed: losses {string.Join(" ", resumed.Select(l => l.ToString("F4")))} (one run {string.Join(" ", full.Skip(3).Select(l => l.ToString("F4")))}), " +
                        $"max |loss diff| {lossDiff:G3}; weights in {files} file(s) max |diff| {weightDiff:G3}", result.Steps == 6 && resumed.Count == 3 && double.IsFinite(weightDiff));
            });

        // -Deterministic: two seeded runs on the device must give the same losses and weights bit for bit (and, for
        // comparison, how far apart two runs without it land).
        if (only.Contains("deterministic"))
            foreach (var (name, apply) in Recipes.Where(r => r.Name is "fp32" or "text-encoder" or "8GB" or "lora" or "bf16"))
                failed += Guard($"deterministic {name} on {device}", () =>
                {
                    var o = apply(Options(repo, tiny, classes, Path.Combine(work, "det-" + name + "-a"), deviceName)) with { Deterministic = true };
                    var (la, oa, sa) = Train(o);
                    var (lb, ob, _) = Train(o with { OutputDirectory = Path.Combine(work, "det-" + name + "-b") });
                    var (diff, _, files) = CompareWeights(oa, ob);
                    var free = o with { Deterministic = false, OutputDirectory = Path.Combine(work, "free-" + name + "-a") };
                    var (fa, foa, sf) = Train(free);
                    var (fb, fob, _) = Train(free with { OutputDirectory = Path.Combine(work, "free-" + name + "-b") });
                    var (freeDiff, _, _) = CompareWeights(foa, fob);
                    double freeLoss = fa.Zip(fb, (a, b) => Math.Abs(a - b)).DefaultIfEmpty(double.NaN).Max();
                    bool same = la.SequenceEqual(lb) && diff == 0 && files > 0;
                    return ($"two seeded runs: losses {(la.SequenceEqual(lb) ? "identical" : "differ")}, max |weight diff| {diff:G3} in {files} file(s), {sa:F1} s a run; " +
                            $"without -Deterministic: max |loss diff| {freeLoss:G3}, max |weight diff| {freeDiff:G3}, {sf:F1} s a run", same);
                });

        // Validation images during training (the pipeline built from the training models, on the device).
        if (only.Contains("validation"))
            failed += Guard($"validation images on {device}", () =>
            {
                int images = 0;
                var o = Options(repo, tiny, classes, Path.Combine(work, "validation"), deviceName) with
                {
                    ValidationPrompts = new[] { "a photo of sks toy" }, ValidationSteps = 3, NumValidationImages = 1, ValidationInferenceSteps = 3,
                };
                var result = DreamBoothTrainer.Train(o, new TrainingEvents { ValidationImage = _ => images++ }, CancellationToken.None);
                return ($"{images} validation image(s) in {result.Steps} steps", images >= 2);
            });

        Console.WriteLine($"cuda-check: {failed} check(s) failed");
        return failed == 0 ? 0 : 1;
    }

    static int Guard(string what, Func<(string Result, bool Ok)> check)
    {
        try
        {
            var (result, ok) = check();
            Console.WriteLine($"{(ok ? "ok  " : "FAIL")} {what}: {result}");
            return ok ? 0 : 1;
        }
        catch (Exception e)
        {
            Console.WriteLine($"FAIL {what}: {e.GetType().Name}: {e.Message}");
            Console.WriteLine("     " + string.Join("\n     ", (e.StackTrace ?? "").Split('\n').Take(8)));
            return 1;
        }
    }

    static Tensor Generate(string tiny, ScalarType dtype, Device device, string? scheduler = null, string? initImage = null, string? maskImage = null)
    {
        using var pipe = StableDiffusionPipeline.FromPretrained(tiny, dtype, device);
        var images = pipe.Generate(new TextToImageOptions
        {
            Prompts = new[] { "a photo of sks dog" }, Steps = 5, Seed = 0, Scheduler = scheduler,
            Width = initImage is null ? 64 : null, Height = initImage is null ? 64 : null, InitImage = initImage, MaskImage = maskImage,
            Strength = initImage is null ? null : 0.6,
        });
        return images[0].Pixels.to(torch.CPU).to(ScalarType.Float32);
    }

    /// <summary>The tiny pipeline with the fixture's 9-channel inpainting UNet in place of its own (a folder of links and copies).</summary>
    static void CopyInpaintPipeline(string tiny, string unet, string target)
    {
        foreach (var dir in Directory.GetDirectories(tiny))
        {
            var name = Path.GetFileName(dir);
            var source = name == "unet" ? unet : dir;
            Directory.CreateDirectory(Path.Combine(target, name));
            foreach (var file in Directory.GetFiles(source)) File.Copy(file, Path.Combine(target, name, Path.GetFileName(file)));
        }
        foreach (var file in Directory.GetFiles(tiny)) File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
    }

    static DreamBoothOptions Options(string repo, string tiny, string classes, string output, string device) => new()
    {
        Model = tiny, InstanceDataDirectory = Path.Combine(repo, "examples", "data", "sks-toy"), InstancePrompt = "a photo of sks toy",
        WithPriorPreservation = true, ClassDataDirectory = classes, ClassPrompt = "a photo of toy", NumClassImages = 3, SampleBatchSize = 2, ClassImageSteps = 3,
        Resolution = 64, RandomFlip = true, TrainBatchSize = 2, LearningRate = 1e-4, MaxTrainSteps = 6, CheckpointingSteps = 1000, Seed = 7,
        OutputDirectory = output, Device = device,
    };

    static (List<double> Losses, string Output, double Seconds) Train(DreamBoothOptions o)
    {
        var losses = new List<double>();
        var clock = Stopwatch.StartNew();
        var result = DreamBoothTrainer.Train(o, new TrainingEvents { Progress = p => { if (p.Phase == "training") losses.Add(p.Loss ?? double.NaN); } }, CancellationToken.None);
        return (losses, result.OutputDirectory, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Max |a − b| over every weight of every safetensors file the two output folders share, and the largest |a|.</summary>
    static (double MaxDiff, double Scale, int Files) CompareWeights(string a, string b)
    {
        double diff = 0, scale = 0;
        int files = 0;
        // The model's weights, not the optimizer state a checkpoint keeps (8-bit moments are codes 0–255).
        foreach (var path in Directory.EnumerateFiles(a, "*.safetensors", SearchOption.AllDirectories).Where(f => Path.GetFileName(f) != "optimizer.safetensors"))
        {
            var other = Path.Combine(b, Path.GetRelativePath(a, path));
            if (!File.Exists(other)) return (double.NaN, 0, files);
            using var scope = torch.NewDisposeScope();
            using var fa = SafetensorsFile.Open(path);
            using var fb = SafetensorsFile.Open(other);
            foreach (var e in fa.Entries)
            {
                var ta = fa.Read(e.Name, ScalarType.Float32);
                var tb = fb.Read(e.Name, ScalarType.Float32);
                diff = Math.Max(diff, (ta - tb).abs().max().ToDouble());
                scale = Math.Max(scale, ta.abs().max().ToDouble());
            }
            files++;
        }
        return (files == 0 ? double.NaN : diff, scale, files);
    }
}
