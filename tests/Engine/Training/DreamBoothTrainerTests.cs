using DreamBooth.Engine.IO;
using DreamBooth.Engine.Training;
using Xunit.Abstractions;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>
/// The trainer end to end on the tiny pipeline: exact resume (N steps, stop, resume to 2N equals 2N in one run, bit
/// for bit), Ctrl+C leaving a resumable checkpoint, pruning, validation images, the final pipeline folder.
/// </summary>
[Collection(TrainingSerialCollection.Name)]
public class DreamBoothTrainerTests : IDisposable
{
    readonly ITestOutputHelper _out;
    readonly string _root = Directory.CreateTempSubdirectory("db-trainer-").FullName;
    public DreamBoothTrainerTests(ITestOutputHelper output) => _out = output;
    public void Dispose() { try { Directory.Delete(_root, true); } catch { } }

    DreamBoothOptions Options(string output, int steps) => new()
    {
        Model = Fixtures.TinySd, InstanceDataDirectory = Fixtures.InstanceImages, InstancePrompt = "a photo of sks toy",
        WithPriorPreservation = true, ClassDataDirectory = Path.Combine(_root, "class"), ClassPrompt = "a photo of toy",
        NumClassImages = 3, SampleBatchSize = 2, ClassImageSteps = 3,
        Resolution = 64, RandomFlip = true, TrainBatchSize = 2, GradientAccumulationSteps = 1, LearningRate = 1e-4,
        LearningRateScheduler = "constant", MaxTrainSteps = steps, CheckpointingSteps = 2, Seed = 7,
        OutputDirectory = Path.Combine(_root, output), Device = "cpu",
    };

    static Dictionary<string, Tensor> Weights(string folder)
    {
        using var f = SafetensorsFile.Open(Path.Combine(folder, "unet", "diffusion_pytorch_model.safetensors"));
        return f.ReadAll();
    }

    [Fact]
    public void ResumeIsBitIdenticalToAnUninterruptedRun()
    {
        var logs = new List<string>();
        var events = new TrainingEvents { Log = logs.Add };
        var full = DreamBoothTrainer.Train(Options("full", 4), events, CancellationToken.None);
        Assert.Equal(4, full.Steps);
        Assert.Contains(logs, l => l.Contains("found 0, generating 3"));

        var half = DreamBoothTrainer.Train(Options("split", 2), new TrainingEvents(), CancellationToken.None);
        Assert.Equal(2, half.Steps);
        var resumed = DreamBoothTrainer.Resume(half.OutputDirectory, 4, new TrainingEvents(), CancellationToken.None);
        Assert.Equal(4, resumed.Steps);

        var a = Weights(full.OutputDirectory);
        var b = Weights(resumed.OutputDirectory);
        Assert.Equal(a.Keys.OrderBy(k => k), b.Keys.OrderBy(k => k));
        foreach (var (name, t) in a) Assert.True(t.Equals(b[name]), $"{name} differs after resume");
        // And training really changed the weights.
        var base0 = Weights(Fixtures.TinySd);
        Assert.Contains(a, kv => !kv.Value.Equals(base0[kv.Key]));
    }

    [Fact]
    public void ResumeIsBitIdentical_WithFp16LossScaling8BitAdamAndCheckpointing()
    {
        // The 8GB/12GB recipes' state (loss scale and its growth counter, 8-bit moments) must survive a resume too.
        DreamBoothOptions O(string name, int steps) => Options(name, steps) with { MixedPrecision = "fp16", Use8BitAdam = true, GradientCheckpointing = true };
        var full = DreamBoothTrainer.Train(O("full16", 4), new TrainingEvents(), CancellationToken.None);
        var half = DreamBoothTrainer.Train(O("split16", 2), new TrainingEvents(), CancellationToken.None);
        var resumed = DreamBoothTrainer.Resume(half.OutputDirectory, 4, new TrainingEvents(), CancellationToken.None);
        Assert.Equal(4, resumed.Steps);
        var a = Weights(full.OutputDirectory);
        var b = Weights(resumed.OutputDirectory);
        foreach (var (name, t) in a) Assert.True(t.Equals(b[name]), $"{name} differs after an fp16 + 8-bit resume");
        var base0 = Weights(Fixtures.TinySd);
        Assert.Contains(a, kv => !kv.Value.Equals(base0[kv.Key]));
    }

    [Fact]
    public void CancellationSavesAResumableCheckpoint()
    {
        using var cts = new CancellationTokenSource();
        var events = new TrainingEvents { Progress = p => { if (p.Phase == "training" && p.Step == 3) cts.Cancel(); } };
        var o = Options("stopped", 4) with { CheckpointingSteps = 100 };
        Assert.ThrowsAny<OperationCanceledException>(() => DreamBoothTrainer.Train(o, events, cts.Token));
        var checkpoints = CheckpointStore.List(o.OutputDirectory);
        Assert.Equal(3, Assert.Single(checkpoints).Step);
        Assert.Empty(Directory.EnumerateDirectories(o.OutputDirectory, "*.tmp-*"));

        var resumed = DreamBoothTrainer.Resume(o.OutputDirectory, null, new TrainingEvents(), CancellationToken.None);
        Assert.Equal(4, resumed.Steps);
        var uninterrupted = DreamBoothTrainer.Train(o with { OutputDirectory = Path.Combine(_root, "straight") }, new TrainingEvents(), CancellationToken.None);
        var a = Weights(uninterrupted.OutputDirectory); var b = Weights(resumed.OutputDirectory);
        foreach (var (name, t) in a) Assert.True(t.Equals(b[name]), $"{name} differs after a cancelled and resumed run");
    }

    [Fact]
    public void OutOfMemory_SavesAResumableCheckpoint_AndResumeMayAddMemorySwitches()
    {
        var o = Options("oom", 4) with { CheckpointingSteps = 100 };
        var saved = new List<CheckpointInfo>();
        // What libtorch's CUDA allocator throws, through TorchSharp, in the third step's backward.
        var events = new TrainingEvents
        {
            CheckpointSaved = saved.Add,
            AfterBackward = (step, _) =>
            {
                if (step == 2) throw new System.Runtime.InteropServices.ExternalException(
                    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 7.79 GiB of which 1.02 GiB is free.\nException raised from malloc at CUDACachingAllocator.cpp");
            },
        };
        var e = Assert.Throws<TrainingOutOfMemoryException>(() => DreamBoothTrainer.Train(o, events, CancellationToken.None));
        _out.WriteLine(e.Message);
        Assert.Equal(3, e.Step);
        var checkpoint = Assert.Single(CheckpointStore.List(o.OutputDirectory));
        Assert.Equal(2, checkpoint.Step);
        Assert.Equal(checkpoint.Path, e.CheckpointPath);
        Assert.Equal(checkpoint.Path, Assert.Single(saved).Path);   // the cmdlet emits it, as any checkpoint
        Assert.Contains("at step 3: CUDA out of memory. Tried to allocate 2.00 GiB.", e.Message);
        // (On the CPU the optimizer state is there already, so offloading is not among the suggestions; checkpointing
        // there is selective unless asked for whole blocks, which save the most.)
        Assert.Contains($"Resume-DreamBoothTraining -Path '{o.OutputDirectory}' -GradientCheckpointing -GradientCheckpointingMode Blocks -SetGradsToNone.", e.Message);
        Assert.IsType<System.Runtime.InteropServices.ExternalException>(e.InnerException);

        // Offloading and releasing gradients change nothing that is learned: the resumed run ends bit for bit where an
        // uninterrupted one does, and its checkpoints record the switches.
        var logs = new List<string>();
        var resumed = DreamBoothTrainer.Resume(o.OutputDirectory, null, new TrainingEvents { Log = logs.Add }, CancellationToken.None,
            new ResumeMemorySwitches { OffloadOptimizerState = true, SetGradsToNone = true });
        Assert.Equal(4, resumed.Steps);
        Assert.Contains(logs, l => l.Contains("Resuming with -OffloadOptimizerState"));
        var last = CheckpointStore.ReadState(CheckpointStore.List(o.OutputDirectory).Last().Path).Options;
        Assert.True(last.OffloadOptimizerState && last.SetGradsToNone && !last.GradientCheckpointing);
        var uninterrupted = DreamBoothTrainer.Train(o with { OutputDirectory = Path.Combine(_root, "no-oom") }, new TrainingEvents(), CancellationToken.None);
        var a = Weights(uninterrupted.OutputDirectory); var b = Weights(resumed.OutputDirectory);
        foreach (var (name, t) in a) Assert.True(t.Equals(b[name]), $"{name} differs after running out of memory and resuming");
    }

    [Fact]
    public void Validation_LeavesTheTrainingUnchanged()
    {
        // Validation releases the (zeroed) gradients to make room and draws from its own generator: the weights after
        // four steps are the same bit for bit with and without validation images at step 2.
        var plain = Options("no-validation", 4) with { WithPriorPreservation = false, CheckpointingSteps = 100 };
        var validated = plain with
        {
            OutputDirectory = Path.Combine(_root, "validation-at-2"),
            ValidationPrompts = new[] { "a photo of sks toy on a beach" }, NumValidationImages = 1, ValidationSteps = 2, ValidationInferenceSteps = 2,
        };
        var images = new List<ValidationImageInfo>();
        var a = DreamBoothTrainer.Train(plain, new TrainingEvents(), CancellationToken.None);
        var b = DreamBoothTrainer.Train(validated, new TrainingEvents { ValidationImage = images.Add }, CancellationToken.None);
        Assert.Equal(2, images.Count);   // steps 2 and 4
        var wa = Weights(a.OutputDirectory); var wb = Weights(b.OutputDirectory);
        foreach (var (name, t) in wa) Assert.True(t.Equals(wb[name]), $"{name} differs with validation");
    }

    [Fact]
    public void CheckpointsArePrunedValidatedAndTheOutputIsAPipeline()
    {
        var saved = new List<CheckpointInfo>(); var images = new List<ValidationImageInfo>();
        var o = Options("pruned", 4) with
        {
            CheckpointsTotalLimit = 1, ValidationPrompts = new[] { "a photo of sks toy on a beach" }, NumValidationImages = 1,
            ValidationSteps = 2, ValidationInferenceSteps = 2, WithPriorPreservation = false,
        };
        var result = DreamBoothTrainer.Train(o, new TrainingEvents { CheckpointSaved = saved.Add, ValidationImage = images.Add }, CancellationToken.None);
        Assert.Equal(new[] { 2, 4 }, saved.Select(c => c.Step).ToArray());
        Assert.Equal(new[] { 4 }, CheckpointStore.List(o.OutputDirectory).Select(c => c.Step).ToArray());
        // Listed later from its manifest, the kept checkpoint reads as the run reported it.
        var listed = CheckpointStore.FoldersOf(o.OutputDirectory).Select(CheckpointStore.Describe).Single();
        Assert.Equal(saved[^1] with { Time = listed.Time }, listed);
        Assert.True(Math.Abs((listed.Time - saved[^1].Time).TotalSeconds) < 30);
        Assert.Equal(listed, CheckpointStore.Describe(CheckpointStore.FoldersOf(listed.Path).Single()));
        Assert.Equal(2, images.Count);
        Assert.All(images, i => Assert.True(File.Exists(i.Path)));
        Assert.True(File.Exists(Path.Combine(result.OutputDirectory, "validation", "step-2", Path.GetFileName(images[0].Path))));
        var folder = DiffusersPipelineFolder.Open(result.OutputDirectory);
        foreach (var c in new[] { "unet", "vae", "text_encoder", "tokenizer", "scheduler" }) Assert.True(Directory.Exists(folder.ComponentDirectory(c)), c);
        // The checkpoint is inference-ready: it names its base model.
        var source = DreamBooth.Engine.Pipelines.ModelSource.Resolve(CheckpointStore.List(o.OutputDirectory)[0].Path);
        Assert.True(source.IsCheckpoint);
        Assert.Equal(Path.GetFullPath(Fixtures.TinySd), source.BaseModel);
    }

    [Fact]
    public void BadInputFailsBeforeAnyWork()
    {
        var empty = Directory.CreateDirectory(Path.Combine(_root, "empty")).FullName;
        File.WriteAllText(Path.Combine(empty, "notes.txt"), "not an image");
        var e1 = Assert.Throws<ArgumentException>(() => DreamBoothTrainer.Preflight(Options("x", 1) with { InstanceDataDirectory = empty }));
        Assert.Contains("holds no images", e1.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => DreamBoothTrainer.Preflight(Options("x", 1) with { Resolution = 60 }));
        var e3 = Assert.Throws<ArgumentException>(() => DreamBoothTrainer.Preflight(Options("x", 1) with { ClassPrompt = null }));
        Assert.Contains("-ClassPrompt", e3.Message);
        var broken = Directory.CreateDirectory(Path.Combine(_root, "broken")).FullName;
        File.WriteAllText(Path.Combine(broken, "photo.png"), "this is not a png");
        var e4 = Assert.ThrowsAny<Exception>(() => DreamBoothTrainer.Preflight(Options("x", 1) with { InstanceDataDirectory = broken }));
        Assert.Contains("photo.png", e4.Message);
        Assert.ThrowsAny<DirectoryNotFoundException>(() => DreamBoothTrainer.Preflight(Options("x", 1) with { Model = Path.Combine(_root, "nope") }));
    }

    [Fact]
    public void CheckpointingEpochs_SavesAtTheEndOfEveryNthEpoch()
    {
        // 4 items in batches of 2: an epoch is 2 steps; every 2nd epoch ends at step 4 (8 is past the run's 7).
        var o = Options("epochs", 7) with { CheckpointingSteps = 1000, CheckpointingEpochs = 2 };
        var saved = new List<int>();
        DreamBoothTrainer.Train(o, new TrainingEvents { CheckpointSaved = c => saved.Add(c.Step) }, CancellationToken.None);
        Assert.Equal(new[] { 4, 7 }, saved);   // and the final one
        Assert.Throws<ArgumentOutOfRangeException>((o with { CheckpointingEpochs = 0 }).Validate);
    }

    [Fact]
    public void AValidationImageNoMemoryHolds_SavesTheStepsDoneAndStopsResumably()
    {
        // kohya-ss' sample-prompt size options ask for a 32768² validation image: GenerationMemory refuses it on the CPU.
        var o = Options("validation-memory", 3) with
        {
            ValidationPrompts = new[] { "a photo of sks toy --w 32768 --h 32768" }, NumValidationImages = 1, ValidationSteps = 2,
            ValidationInferenceSteps = 2, CheckpointingSteps = 1000,
        };
        var e = Assert.Throws<TrainingOutOfMemoryException>(() => DreamBoothTrainer.Train(o, new TrainingEvents(), CancellationToken.None));
        Assert.IsType<HostMemoryShortfallException>(e.InnerException);
        Assert.EndsWith("checkpoint-2", e.CheckpointPath);
        Assert.Equal(2, CheckpointStore.ReadState(e.CheckpointPath!).GlobalStep);
    }

    [Fact]
    public void SavePrecision_WritesTheFinalModelInHalfPrecision_AndCheckpointsInFp32()
    {
        var fp32 = DreamBoothTrainer.Train(Options("save-fp32", 2) with { WithPriorPreservation = false, TrainTextEncoder = true }, new TrainingEvents(), CancellationToken.None);
        var fp16 = DreamBoothTrainer.Train(Options("save-fp16", 2) with { WithPriorPreservation = false, TrainTextEncoder = true, SavePrecision = "fp16" }, new TrainingEvents(), CancellationToken.None);
        foreach (var (component, file) in new[] { ("unet", "diffusion_pytorch_model.safetensors"), ("text_encoder", "model.safetensors") })
        {
            using var full = SafetensorsFile.Open(Path.Combine(fp32.OutputDirectory, component, file));
            using var half = SafetensorsFile.Open(Path.Combine(fp16.OutputDirectory, component, file));
            var a = full.ReadAll();
            var b = half.ReadAll();
            Assert.All(b, kv => Assert.True(kv.Value.dtype == ScalarType.Float16 || !kv.Value.is_floating_point(), kv.Key));
            foreach (var (name, t) in a)
                Assert.True(t.is_floating_point() ? t.to(ScalarType.Float16).Equals(b[name]) : t.Equals(b[name]), $"{component} {name}");
            using var checkpoint = SafetensorsFile.Open(Path.Combine(fp16.OutputDirectory, "checkpoint-2", component, file));
            Assert.All(checkpoint.ReadAll(), kv => Assert.True(kv.Value.dtype != ScalarType.Float16, kv.Key));
        }
        Assert.Contains("float16", File.ReadAllText(Path.Combine(fp16.OutputDirectory, "text_encoder", "config.json")));
        using var pipe = DreamBooth.Engine.Pipelines.StableDiffusionPipeline.FromPretrained(fp16.OutputDirectory, ScalarType.Float32, torch.CPU);
        Assert.Single(pipe.Generate(new DreamBooth.Engine.Pipelines.TextToImageOptions { Prompts = new[] { "a photo of sks toy" }, Steps = 2, Width = 64, Height = 64 }));
    }

    [Fact]
    public void AnInpaintingModel_IsRefusedBeforeAnyWork()
    {
        // The tiny pipeline with the 9-input-channel UNet of the inpainting fixture in place of its own.
        var model = Path.Combine(_root, "tiny-inpainting");
        foreach (var file in Directory.EnumerateFiles(Fixtures.TinySd, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(model, Path.GetRelativePath(Fixtures.TinySd, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        foreach (var file in Directory.EnumerateFiles(Path.Combine(Fixtures.Root, "img2img", "inpaint", "unet-inpaint")))
            File.Copy(file, Path.Combine(model, "unet", Path.GetFileName(file)), overwrite: true);
        var e = Assert.Throws<ArgumentException>(() => DreamBoothTrainer.Preflight(Options("x", 1) with { Model = model }));
        Assert.Contains("inpainting model", e.Message);
    }
}
