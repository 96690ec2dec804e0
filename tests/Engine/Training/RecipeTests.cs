using DreamBooth.Engine.Models;
using DreamBooth.Engine.IO;
using DreamBooth.Engine.Training;
using TorchSharp.Modules;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>
/// Memory and precision recipes on the trainer path (tiny pipeline, 64 px, a few steps each): gradient checkpointing,
/// fp16 loss scaling, optimizer offload, 8-bit AdamW, cached latents, memory profiles.
/// </summary>
[Collection(TrainingSerialCollection.Name)]
public sealed class RecipeTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("db-recipe-").FullName;
    readonly string _instances, _classes;

    readonly Xunit.Abstractions.ITestOutputHelper? _log;

    public RecipeTests(Xunit.Abstractions.ITestOutputHelper log)
    {
        _log = log;
        _instances = Path.Combine(_root, "instance");
        _classes = Path.Combine(_root, "class");
        var g = new torch.Generator(7);
        foreach (var (dir, n, w, h) in new[] { (_instances, 3, 80, 64), (_classes, 2, 64, 72) })
        {
            Directory.CreateDirectory(dir);
            for (int i = 0; i < n; i++) { using var img = torch.rand(new long[] { 3, h, w }, generator: g); PngWriter.Save(img, Path.Combine(dir, $"{i}.png")); }
        }
    }

    public void Dispose() { try { Directory.Delete(_root, true); } catch (IOException) { } }

    DreamBoothOptions Options(string name, int steps) => new()
    {
        Model = Path.Combine(Fixtures.Root, "tiny-sd"), InstanceDataDirectory = _instances, InstancePrompt = "a photo of sks dog",
        ClassDataDirectory = _classes, ClassPrompt = "a photo of dog", WithPriorPreservation = true, NumClassImages = 2,
        Resolution = 64, CenterCrop = true, MaxTrainSteps = steps, LearningRate = 1e-3, CheckpointingSteps = 1,
        OutputDirectory = Path.Combine(_root, name), Device = "cpu", Seed = 3,
    };

    /// <summary>Runs the trainer; returns each step's gradients (cloned, by parameter order) and the warnings.</summary>
    static (List<Tensor[]> Grads, List<string> Warnings) Train(DreamBoothOptions o, Action<int, IReadOnlyList<Tensor?>>? inject = null,
        List<string>? log = null, bool offloadGradientsOnCpu = false, Action<GradientOffload>? offloadDone = null, bool encodeViewsAsTheyCome = false)
    {
        var grads = new List<Tensor[]>();
        var warnings = new List<string>();
        var events = new TrainingEvents
        {
            Warning = warnings.Add,
            Log = line => log?.Add(line),
            AfterBackward = (step, gs) =>
            {
                grads.Add(gs.Select(g => g is null ? torch.zeros(1) : g.detach().clone().DetachFromDisposeScope()).ToArray());
                inject?.Invoke(step, gs);
            },
            OffloadGradientsOnCpu = offloadGradientsOnCpu,
            EncodeViewsAsTheyCome = encodeViewsAsTheyCome,
            GradientOffloadDone = offloadDone,
        };
        DreamBoothTrainer.Train(o, events, CancellationToken.None);
        return (grads, warnings);
    }

    static Dictionary<string, Tensor> Unet(string checkpoint) => ReadAll(Path.Combine(checkpoint, "unet", "diffusion_pytorch_model.safetensors"));

    static Dictionary<string, Tensor> ReadAll(string path)
    {
        using var file = SafetensorsFile.Open(path);
        return file.ReadAll();
    }

    /// <summary>
    /// Error of gradient set <paramref name="a"/> against <paramref name="b"/>, relative to the whole set: the largest
    /// |a−b| over the largest |b|. (Per-tensor ratios are meaningless for biases in front of a GroupNorm, whose exact
    /// gradient is 0 and whose computed one is rounding noise of ~1e-9.)
    /// </summary>
    static double MaxRelative(Tensor[] a, Tensor[] b)
    {
        double diff = 0, scale = 0;
        for (int i = 0; i < a.Length; i++)
        {
            diff = Math.Max(diff, (a[i] - b[i]).abs().max().item<float>());
            scale = Math.Max(scale, b[i].abs().max().item<float>());
        }
        return diff / scale;
    }

    /// <summary>The tiny fixture UNet in train mode and a seeded batch of 2 (latents, context, two timesteps).</summary>
    static (DreamBooth.Engine.Models.Unets.UNet2DConditionModel Unet, Tensor X, Tensor C, Tensor T) TinyUnetTrainingInputs(ulong seed)
    {
        var unet = DreamBooth.Engine.Models.Unets.UNet2DConditionModel.FromPretrained(Path.Combine(Fixtures.Root, "tiny-sd", "unet"));
        unet.train();
        var g = new torch.Generator(seed);
        return (unet, torch.randn(new long[] { 2, 4, 32, 32 }, generator: g), torch.randn(new long[] { 2, 77, 32 }, generator: g),
            torch.tensor(new long[] { 10, 700 }));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void GradientCheckpointing_UNetGradientsEqualPlain(bool selective)
    {
        using var scope = torch.NewDisposeScope();
        var (unet, x, c, t) = TinyUnetTrainingInputs(seed: 5);
        using var _ = unet;
        int checkpointed = 0;
        Tensor[] Grads(bool checkpointing)
        {
            unet.GradientCheckpointing = checkpointing;
            unet.SelectiveCheckpointing = selective;
            unet.CheckpointRunner = (fn, xs) => { checkpointed++; return GradientCheckpoint.Run(fn, xs); };
            unet.zero_grad();
            var loss = unet.forward(x, t, c).pow(2).mean();
            _log?.WriteLine($"checkpointing {checkpointing} (selective {selective}): loss {loss.item<float>():R}");
            loss.backward();
            GradientCheckpoint.ThrowPendingError();
            return unet.parameters().Select(p => p.grad!.clone()).ToArray();
        }
        var plain = Grads(false);
        Assert.Equal(0, checkpointed);
        var withCheckpoints = Grads(true);
        Assert.True(MaxRelative(withCheckpoints, plain) <= 1e-5, $"relative error {MaxRelative(withCheckpoints, plain):E2}");
        // What is recomputed: whole resnets and transformer blocks (all but the mid block's first resnet, which
        // diffusers runs outside its checkpoint loop), or, selectively, each resnet's two norm + activation pairs and
        // each transformer block's norm + GEGLU.
        int resnets = unet.modules().Count(m => m is ResnetBlock2D), blocks = unet.modules().Count(m => m is BasicTransformerBlock);
        int midBlocks = unet.modules().Count(m => m is DreamBooth.Engine.Models.Unets.UNetMidBlock2DCrossAttn);
        Assert.Equal(selective ? 2 * resnets + blocks : resnets - midBlocks + blocks, checkpointed);
    }

    [Theory]
    [InlineData("bf16", false)]
    [InlineData("fp16", false)]
    [InlineData("bf16", true)]
    [InlineData("fp16", true)]
    public void Autocast_UNetComputesInLowPrecision_GradientsStayFp32AndClose(string precision, bool emulated)
    {
        using var scope = torch.NewDisposeScope();
        using var mode = LowPrecisionOnCpu.OverrideEmulation(emulated);   // libtorch's kernels, or fp32 arithmetic
        var (unet, x, c, t) = TinyUnetTrainingInputs(seed: 6);
        using var _ = unet;
        (Tensor Output, Tensor[] Grads) Run(ScalarType? compute)
        {
            unet.zero_grad();
            Tensor output;
            using (MixedPrecision.Autocast(compute)) output = unet.forward(x, t, c);
            output.to(ScalarType.Float32).pow(2).mean().backward();
            return (output, unet.parameters().Select(p => p.grad!.clone()).ToArray());
        }
        var (plainOut, plainGrads) = Run(null);
        var dtype = MixedPrecision.Parse(precision)!.Value;
        var (lowOut, lowGrads) = Run(dtype);
        Assert.Equal(dtype, lowOut.dtype);                               // conv_out ran in the low precision
        Assert.All(lowGrads, gr => Assert.Equal(ScalarType.Float32, gr.dtype));   // master weights get fp32 grads
        Assert.Null(MixedPrecision.ComputeDType);                        // the scope ended
        double outErr = Fixtures.RelativeError(lowOut.to(ScalarType.Float32), plainOut);
        double gradErr = MaxRelative(lowGrads, plainGrads);
        _log?.WriteLine($"{precision}, emulated {emulated}: output relative error {outErr:E2}, gradient error {gradErr:E2}");
        // bf16 keeps 8 mantissa bits (2^-8 ≈ 4e-3 per rounding), fp16 11; errors stay at the few-% / sub-% level.
        Assert.True(outErr < (precision == "bf16" ? 5e-2 : 1e-2), $"output relative error {outErr:E2}");
        Assert.True(gradErr < (precision == "bf16" ? 1e-1 : 2e-2), $"gradient error {gradErr:E2}");
        Assert.True(outErr > 0);                                         // it really was not fp32
    }

    [Theory]
    [InlineData("bf16", false)]
    [InlineData("fp16", false)]
    [InlineData("bf16", true)]
    [InlineData("fp16", true)]
    public void Autocast_TrainedTextEncoderComputesInLowPrecision_GradientsStayFp32AndClose(string precision, bool emulated)
    {
        using var scope = torch.NewDisposeScope();
        using var mode = LowPrecisionOnCpu.OverrideEmulation(emulated);   // libtorch's kernels, or fp32 arithmetic
        using var te = DreamBooth.Engine.Models.TextEncoders.ClipTextModel.FromPretrained(Path.Combine(Fixtures.Root, "tiny-sd", "text_encoder"));
        te.train();
        var ids = torch.tensor(new long[,] { { 49406, 320, 1125, 539, 48136, 1929, 49407, 49407 }, { 49406, 320, 1125, 539, 1929, 49407, 49407, 49407 } });
        (Tensor Output, Tensor[] Grads) Run(ScalarType? compute)
        {
            te.zero_grad();
            Tensor output;
            using (MixedPrecision.Autocast(compute)) output = te.Forward(ids).LastHiddenState;
            output.pow(2).mean().backward();
            return (output, te.parameters().Select(p => p.grad!.clone()).ToArray());
        }
        var (plainOut, plainGrads) = Run(null);
        var (lowOut, lowGrads) = Run(MixedPrecision.Parse(precision)!.Value);
        Assert.Equal(ScalarType.Float32, lowOut.dtype);                  // the final LayerNorm runs in fp32, as autocast runs it
        Assert.All(lowGrads, gr => Assert.Equal(ScalarType.Float32, gr.dtype));
        double outErr = Fixtures.RelativeError(lowOut, plainOut);
        double gradErr = MaxRelative(lowGrads, plainGrads);
        _log?.WriteLine($"{precision}, emulated {emulated}: text encoder output relative error {outErr:E2}, gradient error {gradErr:E2}");
        Assert.True(outErr < (precision == "bf16" ? 5e-2 : 1e-2), $"output relative error {outErr:E2}");
        Assert.True(gradErr < (precision == "bf16" ? 1e-1 : 2e-2), $"gradient error {gradErr:E2}");
        Assert.True(outErr > 0);                                         // the projections really ran in low precision
    }

    [Fact]
    public void GradientCheckpointing_TextEncoderUnderBf16_RecomputesInTheForwardsPrecision()
    {
        using var scope = torch.NewDisposeScope();
        using var te = DreamBooth.Engine.Models.TextEncoders.ClipTextModel.FromPretrained(Path.Combine(Fixtures.Root, "tiny-sd", "text_encoder"));
        te.train();
        var ids = torch.tensor(new long[,] { { 49406, 320, 1125, 539, 48136, 1929, 49407, 49407 } });
        var seen = new List<ScalarType?>();
        Tensor[] Grads(bool checkpointing, Func<Func<Tensor[], Tensor[]>, Tensor[], Tensor[]> runner)
        {
            te.GradientCheckpointing = checkpointing;
            te.CheckpointRunner = (fn, xs) => runner(ys => { seen.Add(MixedPrecision.ComputeDType); return fn(ys); }, xs);
            te.zero_grad();
            Tensor loss;
            using (MixedPrecision.Autocast(ScalarType.BFloat16)) loss = te.Forward(ids).LastHiddenState.pow(2).mean();
            loss.backward();   // after the scope, as the trainer calls it
            GradientCheckpoint.ThrowPendingError();
            return te.parameters().Select(p => p.grad!.clone()).ToArray();
        }
        var plain = Grads(false, GradientCheckpoint.Run);
        int layers = te.TextModel.Encoder.Layers.Count;
        var checkpointed = Grads(true, GradientCheckpoint.RunInForwardAutocast);
        Assert.Equal(Enumerable.Repeat<ScalarType?>(ScalarType.BFloat16, 2 * layers), seen);   // forward and recompute of each layer
        double err = MaxRelative(checkpointed, plain);
        seen.Clear();
        double fp32RecomputeErr = MaxRelative(Grads(true, GradientCheckpoint.Run), plain);       // what the restore prevents
        _log?.WriteLine($"bf16 text encoder, checkpointed vs plain gradients: {err:E2}; with an fp32 recompute: {fp32RecomputeErr:E2}");
        Assert.Contains<ScalarType?>(null, seen);
        Assert.True(err <= 1e-5, $"relative error {err:E2}");
        Assert.True(fp32RecomputeErr > 1e-4, $"an fp32 recompute should be visible: {fp32RecomputeErr:E2}");
    }

    [Theory]
    [InlineData("blocks")]
    [InlineData("selective")]
    [InlineData("auto")]   // selective on the CPU, and the log says so
    public void GradientCheckpointing_GradientsEqualPlainOnTrainingSteps(string mode)
    {
        var (plain, _) = Train(Options("plain", 2));
        var log = new List<string>();
        var (checkpointed, _) = Train(Options("ckpt-" + mode, 2) with { GradientCheckpointing = true, GradientCheckpointingMode = mode }, log: log);
        Assert.Contains(GradientCheckpointingMode.Describe(mode, onCpu: true), log);
        Assert.Equal(mode != "blocks", log.Any(l => l.Contains("norm + activation pairs")));
        Assert.Equal(2, checkpointed.Count);
        for (int s = 0; s < 2; s++) Assert.True(MaxRelative(plain[s], checkpointed[s]) <= 1e-5, $"step {s}: relative error {MaxRelative(plain[s], checkpointed[s]):E2}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]   // the gradients on the host (-OffloadOptimizerState on a GPU)
    public void Fp16LossScaling_SkipsInjectedInfStep_HalvesScale_AndRecovers(bool offloaded)
    {
        var o = Options("fp16", 3) with { MixedPrecision = "fp16", OffloadOptimizerState = offloaded };
        var log = new List<string>();
        var (_, warnings) = Train(o, (step, gs) => { if (step == 1) using (torch.no_grad()) gs[0]!.view(-1)[0] = float.PositiveInfinity; }, log,
            offloadGradientsOnCpu: offloaded);
        Assert.Contains(warnings, w => w.Contains("Step 2") && w.Contains("overflow"));
        // Before loading anything, the trainer warns when fp16 runs libtorch's slow fallback kernels on this CPU (a CPU
        // without fp16 instructions computes it in fp32 arithmetic instead, and there is nothing to warn about).
        bool slowHere = !LowPrecisionOnCpu.Emulates(torch.CPU, ScalarType.Float16)
            && LowPrecisionOnCpu.Slowdown(ScalarType.Float16) > LowPrecisionOnCpu.SlowFactor;
        Assert.Equal(slowHere, warnings.Any(w => w.Contains("-MixedPrecision fp16") && w.Contains("fallback")));
        // Where the CPU has no fp16 instructions, the log says the layers compute in fp32 arithmetic (and only there).
        Assert.Equal(LowPrecisionOnCpu.Emulates(torch.CPU, ScalarType.Float16), log.Any(l => l.StartsWith("-MixedPrecision fp16:") && l.Contains("fp32 arithmetic")));
        var c1 = Unet(Path.Combine(o.OutputDirectory, "checkpoint-1"));
        var c2 = Unet(Path.Combine(o.OutputDirectory, "checkpoint-2"));
        var c3 = Unet(Path.Combine(o.OutputDirectory, "checkpoint-3"));
        foreach (var (k, v) in c1) Assert.True(v.Equals(c2[k]), $"{k} changed on the skipped step");
        Assert.Contains(c1.Keys, k => !c1[k].Equals(c3[k]));
        Assert.All(c3.Values, v => Assert.True(v.isfinite().all().item<bool>()));
        Assert.Equal(new LossScalerState(65536, 1), CheckpointStore.ReadState(Path.Combine(o.OutputDirectory, "checkpoint-1")).LossScaler);
        Assert.Equal(new LossScalerState(32768, 0), CheckpointStore.ReadState(Path.Combine(o.OutputDirectory, "checkpoint-2")).LossScaler);
        Assert.Equal(new LossScalerState(32768, 1), CheckpointStore.ReadState(Path.Combine(o.OutputDirectory, "checkpoint-3")).LossScaler);
    }

    [Fact]
    public void NonFiniteGradient_InFp32_SkipsTheStep()
    {
        var o = Options("nan", 2);
        var (_, warnings) = Train(o, (step, gs) => { if (step == 1) using (torch.no_grad()) gs[3]!.view(-1)[0] = float.NaN; });
        Assert.Contains(warnings, w => w.Contains("Step 2") && w.Contains("skipped"));
        var c1 = Unet(Path.Combine(o.OutputDirectory, "checkpoint-1"));
        var c2 = Unet(Path.Combine(o.OutputDirectory, "checkpoint-2"));
        foreach (var (k, v) in c1) Assert.True(v.Equals(c2[k]), $"{k} changed on the skipped step");
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]   // and the gradients moved to host buffers during backward, as on a GPU
    [InlineData(true, true)]
    public void OffloadedOptimizerState_GivesTheSameWeights(bool use8Bit, bool gradientsOffloaded)
    {
        var a = Options("resident" + use8Bit + gradientsOffloaded, 2) with { Use8BitAdam = use8Bit };
        var b = Options("offload" + use8Bit + gradientsOffloaded, 2) with { Use8BitAdam = use8Bit, OffloadOptimizerState = true };
        Train(a); Train(b, offloadGradientsOnCpu: gradientsOffloaded);
        var wa = Unet(a.OutputDirectory + "/checkpoint-2");
        var wb = Unet(b.OutputDirectory + "/checkpoint-2");
        foreach (var (k, v) in wa) Assert.True(v.Equals(wb[k]), k);
    }

    /// <summary>
    /// The 8GB profile's gradient offload on the trainer path: whole-block checkpointing, fp16 loss scaling, two
    /// micro-batches per step (the second one's gradients are added to the host copies), clipping. Same weights as the
    /// run that keeps its gradients on the parameters; and with checkpointing the device never held all gradients at
    /// once, without it it did (they are collected after backward).
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void OffloadedGradients_GiveTheSameWeights_AndLeaveTheDeviceDuringBackward(bool checkpointing)
    {
        DreamBoothOptions Recipe(string name) => Options(name + checkpointing, 2) with
        {
            GradientCheckpointing = checkpointing, MixedPrecision = "fp16", GradientAccumulationSteps = 2, MaxGradNorm = 1e-3,
        };
        var a = Recipe("grads-resident");
        var b = Recipe("grads-offloaded") with { OffloadOptimizerState = true };
        GradientOffload? offload = null;
        long peak = 0, hostBytes = 0;
        var (ga, _) = Train(a);
        var log = new List<string>();
        var (gb, _) = Train(b, log: log, offloadGradientsOnCpu: true, offloadDone: o => { offload = o; peak = o.PeakCollectedBytes; hostBytes = o.HostBytes; });
        Assert.NotNull(offload);
        // The update ran on float32 master copies of the weights, as on a GPU (AdamWOptions.HostMasterWeights).
        Assert.Contains(log, l => l.StartsWith("Optimizer state") && l.Contains("float32 master weights on the host"));
        for (int s = 0; s < ga.Count; s++)
            for (int i = 0; i < ga[s].Length; i++) Assert.True(ga[s][i].Equals(gb[s][i]), $"step {s}, gradient {i}");
        var wa = Unet(a.OutputDirectory + "/checkpoint-2");
        var wb = Unet(b.OutputDirectory + "/checkpoint-2");
        foreach (var (k, v) in wa) Assert.True(v.Equals(wb[k]), k);
        long unetBytes = wa.Values.Sum(v => v.numel() * 4);
        Assert.Equal(unetBytes, hostBytes);
        _log?.WriteLine($"checkpointing {checkpointing}: at most {peak} of {hostBytes} gradient bytes on the parameters at once ({(double)peak / hostBytes:P1})");
        // Tiny UNet: 15% (one block's gradients plus those outside the blocks collected with it); SD-1.4: 7.4%
        // (offload-sd14). Without checkpointing everything waits for the end of backward.
        if (checkpointing) Assert.True(peak < hostBytes / 4, $"{peak} of {hostBytes} bytes at once");
        else Assert.Equal(hostBytes, peak);
    }

    /// <summary>
    /// A model whose UNet weights cannot load (two variant files, fp16 and bf16, and no default one) is refused by Preflight, before any class
    /// image is generated or model loaded, with what to do.
    /// </summary>
    [Fact]
    public void Preflight_RefusesWeightsThatCannotLoad()
    {
        var model = Path.Combine(_root, "variant-only-model");
        foreach (var f in Directory.GetFiles(Path.Combine(Fixtures.Root, "tiny-sd"), "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(model, Path.GetRelativePath(Path.Combine(Fixtures.Root, "tiny-sd"), f));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(f, target);
        }
        File.Move(Path.Combine(model, "unet", "diffusion_pytorch_model.safetensors"), Path.Combine(model, "unet", "diffusion_pytorch_model.fp16.safetensors"));
        File.Copy(Path.Combine(model, "unet", "diffusion_pytorch_model.fp16.safetensors"), Path.Combine(model, "unet", "diffusion_pytorch_model.bf16.safetensors"));
        var o = Options("variant-only", 1) with { Model = model, NumClassImages = 5 };
        var e = Assert.Throws<DiffusersFolderException>(() => DreamBoothTrainer.Preflight(o));
        Assert.Contains("several weights variants (bf16, fp16)", e.Message);
        Assert.Equal(2, Directory.GetFiles(_classes).Length);   // no class image was generated
    }

    /// <summary>
    /// --prior_generation_precision: the class images missing are generated in the precision asked for (diffusers'
    /// default: fp16 on a GPU, fp32 on the CPU; "no" means that default too); anything else is refused up front.
    /// </summary>
    [Theory]
    [InlineData(null, "fp32")]
    [InlineData("no", "fp32")]
    [InlineData("bf16", "bf16")]
    public void PriorGenerationPrecision_ChoosesTheClassImagesPrecision(string? asked, string used)
    {
        var o = Options("prior-precision-" + (asked ?? "auto"), 1) with { NumClassImages = 3, ClassImageSteps = 2, PriorGenerationPrecision = asked };
        var log = new List<string>();
        Train(o, log: log);
        Assert.Contains(log, l => l.Contains($"found 2, generating 1 ({used} on cpu)."));
        Assert.Equal(3, Directory.GetFiles(_classes).Length);
        var e = Assert.Throws<ArgumentException>((o with { PriorGenerationPrecision = "fp8" }).Validate);
        Assert.Contains("-PriorGenerationPrecision", e.Message);
    }

    /// <summary>
    /// -CaptionExtension (kohya-ss' caption files): captions that repeat the instance prompt train exactly as no
    /// captions do (the prompt plumbing changes nothing else); a caption of its own changes what that image teaches,
    /// with the frozen text encoder's precomputed embeddings and with a trained text encoder alike; an empty caption
    /// file stops the run in Preflight, before any model loads.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Captions_GiveEachImageItsPrompt(bool trainTextEncoder)
    {
        var plain = Options("no-captions", 2) with { TrainTextEncoder = trainTextEncoder };
        var same = Options("same-captions", 2) with { TrainTextEncoder = trainTextEncoder, CaptionExtension = "txt" };
        var own = Options("own-caption", 2) with { TrainTextEncoder = trainTextEncoder, CaptionExtension = ".txt" };
        foreach (var image in Directory.GetFiles(_instances, "*.png"))
            File.WriteAllText(Path.ChangeExtension(image, ".txt"), plain.InstancePrompt + "\n");
        Train(plain);
        var log = new List<string>();
        Train(same, log: log);
        Assert.Contains(log, l => l.StartsWith("Captions (.txt): 0 of 3 instance images"));
        File.WriteAllText(Path.Combine(_instances, "1.txt"), "a photo of sks dog wearing a red hat");
        log.Clear();
        Train(own, log: log);
        Assert.Contains(log, l => l.StartsWith("Captions (.txt): 1 of 3 instance images"));

        var w0 = Unet(plain.OutputDirectory + "/checkpoint-2");
        var w1 = Unet(same.OutputDirectory + "/checkpoint-2");
        var w2 = Unet(own.OutputDirectory + "/checkpoint-2");
        foreach (var (k, v) in w0) Assert.True(v.Equals(w1[k]), k);
        Assert.Contains(w0, kv => !kv.Value.Equals(w2[kv.Key]));

        // A caption longer than CLIP's 77 tokens is cut off there, with a warning.
        var longCaption = string.Join(' ', Enumerable.Repeat("a photo of sks dog", 20));
        File.WriteAllText(Path.Combine(_instances, "2.txt"), longCaption);
        var (_, warnings) = Train(own with { OutputDirectory = Path.Combine(_root, "long-caption" + trainTextEncoder), MaxTrainSteps = 1 });
        Assert.Contains(warnings, w => w.StartsWith("1 caption(s) are longer than the text encoder's 77 tokens"));

        File.WriteAllText(Path.Combine(_instances, "2.txt"), "");
        var e = Assert.Throws<InvalidDataException>(() => DreamBoothTrainer.Preflight(own with { OutputDirectory = Path.Combine(_root, "empty-caption") }));
        Assert.Contains("2.txt", e.Message);
    }

    /// <summary>
    /// -Deterministic: libtorch's deterministic mode for the run, off again after it. The CPU's kernels are
    /// deterministic already, so the run gives the same weights as one without it, bit for bit (no operation of the
    /// training path refuses the mode); on a GPU, cuda-check runs it twice and compares.
    /// </summary>
    [Fact]
    public void Deterministic_IsOnForTheRunOnly_AndChangesNothingOnTheCpu()
    {
        var plain = Options("nondeterministic", 2) with { TrainTextEncoder = true, GradientCheckpointing = true };
        var seeded = Options("deterministic", 2) with { TrainTextEncoder = true, GradientCheckpointing = true, Deterministic = true };
        bool onDuringRun = false;
        Train(plain);
        var events = new TrainingEvents { Progress = _ => onDuringRun |= DeterministicAlgorithms.Enabled };
        DreamBoothTrainer.Train(seeded, events, CancellationToken.None);
        Assert.True(onDuringRun);
        Assert.False(DeterministicAlgorithms.Enabled);
        var wa = Unet(plain.OutputDirectory + "/checkpoint-2");
        var wb = Unet(seeded.OutputDirectory + "/checkpoint-2");
        foreach (var (k, v) in wa) Assert.True(v.Equals(wb[k]), k);
    }

    /// <summary>
    /// The same moves when the text encoder trains too (its layers are checkpointed and report their backward as the
    /// UNet's blocks do) and for LoRA adapters on both: gradients equal bit for bit to the resident run's, every
    /// trainable parameter has its host buffer, and the parameters never held all of them at once.
    /// </summary>
    [Theory]
    [InlineData(false)]   // full fine-tuning of the UNet and the text encoder
    [InlineData(true)]    // LoRA adapters on both
    public void OffloadedGradients_WithTheTextEncoderAndLoRA_GiveTheSameGradients(bool lora)
    {
        DreamBoothOptions Recipe(string name) => Options(name + lora, 2) with { GradientCheckpointing = true, TrainTextEncoder = true, LoRA = lora };
        long peak = 0, hostBytes = 0;
        var (ga, _) = Train(Recipe("te-resident"));
        var (gb, _) = Train(Recipe("te-offloaded") with { OffloadOptimizerState = true }, offloadGradientsOnCpu: true,
            offloadDone: o => { peak = o.PeakCollectedBytes; hostBytes = o.HostBytes; });
        Assert.Equal(2, gb.Count);
        for (int s = 0; s < ga.Count; s++)
            for (int i = 0; i < ga[s].Length; i++) Assert.True(ga[s][i].Equals(gb[s][i]), $"step {s}, gradient {i}");
        Assert.Equal(ga[0].Sum(g => g.numel() * 4), hostBytes);
        _log?.WriteLine($"lora {lora}: at most {peak} of {hostBytes} gradient bytes on the parameters at once ({(double)peak / hostBytes:P1})");
        // Full fine-tuning: 58% here, nearly all of it the tiny text encoder's token embedding (49408 × 32), which sits
        // outside the checkpointed layers and leaves at the end of backward (in SD-1.4 it is 0.15 of 3.7 GB). LoRA: 20%.
        Assert.True(peak < hostBytes, $"{peak} of {hostBytes} bytes at once");
    }

    [Fact]
    public void EightBitAdam_ThroughTheTrainer_StaysCloseToFp32AdamW()
    {
        var a = Options("adam32", 2);
        var b = Options("adam8", 2) with { Use8BitAdam = true };
        Train(a); Train(b);
        var wa = Unet(a.OutputDirectory + "/checkpoint-2");
        var wb = Unet(b.OutputDirectory + "/checkpoint-2");
        var w0 = ReadAll(Path.Combine(Fixtures.Root, "tiny-sd", "unet", "diffusion_pytorch_model.safetensors"));
        // Two steps of lr 1e-3: each weight moves ≈ 2e-3; 8-bit moments change each update by a few per cent at most.
        double worstUpdateError = 0;
        foreach (var (k, v) in wa)
        {
            double update = (v - w0[k]).abs().max().item<float>();
            if (update == 0) continue;
            worstUpdateError = Math.Max(worstUpdateError, (v - wb[k]).abs().max().item<float>() / update);
        }
        Assert.True(worstUpdateError < 0.1, $"8-bit vs fp32 AdamW update differs by {worstUpdateError:P1} of the update");
        Assert.Contains(wa.Keys, k => !wa[k].Equals(wb[k]));   // the 8-bit path really ran
    }

    [Fact]
    public void CachedLatents_TrainLikeUncachedWithCenterCropAndNoFlip()
    {
        var (uncached, _) = Train(Options("uncached", 2));
        var (cached, _) = Train(Options("cached", 2) with { CacheLatents = true });
        Assert.Equal(2, cached.Count);
        // Both paths encode each image alone (LatentCache), so they compute the same thing.
        for (int s = 0; s < 2; s++) Assert.True(MaxRelative(uncached[s], cached[s]) == 0, $"step {s}: relative error {MaxRelative(uncached[s], cached[s]):E2}");
    }

    [Fact]
    public void FixedViews_AreEncodedBeforeTraining_AndTheVaeFreed_WithTheSameRun()
    {
        var log = new List<string>();
        var (upFront, _) = Train(Options("up-front", 3), log: log);
        var (asTheyCome, _) = Train(Options("as-they-come", 3), encodeViewsAsTheyCome: true);
        Assert.Contains(log, l => l.Contains("the VAE was freed"));
        Assert.Equal(3, upFront.Count);
        for (int s = 0; s < 3; s++) Assert.True(MaxRelative(asTheyCome[s], upFront[s]) == 0, $"step {s}: relative error {MaxRelative(asTheyCome[s], upFront[s]):E2}");

        // A random flip gives each image two views: they are encoded as they come and the VAE stays.
        var flipLog = new List<string>();
        Train(Options("flip", 1) with { RandomFlip = true }, log: flipLog);
        Assert.DoesNotContain(flipLog, l => l.Contains("VAE was freed") || l.Contains("encoding each once"));
        // Validation images decode with the VAE: the views are encoded up front, the VAE kept.
        var validationLog = new List<string>();
        Train(Options("validation", 1) with { ValidationPrompts = new[] { "a photo of sks dog" }, ValidationSteps = 1, ValidationInferenceSteps = 2 }, log: validationLog);
        Assert.Contains(validationLog, l => l.Contains("encoding each once"));
        Assert.DoesNotContain(validationLog, l => l.Contains("VAE was freed"));
    }

    [Fact]
    public void MemoryProfiles_TurnOnTheGuidesFlags()
    {
        var o = Options("p", 1);
        var (p16, c16) = MemoryProfiles.Apply(o, "16GB");
        Assert.True(p16.GradientCheckpointing && p16.Use8BitAdam && !p16.SetGradsToNone && p16.MixedPrecision == "no");
        Assert.Equal(2, c16.Count);
        var (p12, c12) = MemoryProfiles.Apply(o, "12gb");
        Assert.True(p12.GradientCheckpointing && p12.Use8BitAdam && p12.SetGradsToNone && !p12.OffloadOptimizerState);
        Assert.Contains(c12, c => c.Contains("Xformers"));
        var (p8, _) = MemoryProfiles.Apply(o, "8GB");
        Assert.True(p8.GradientCheckpointing && p8.MixedPrecision == "fp16" && p8.OffloadOptimizerState && !p8.Use8BitAdam && p8.SampleBatchSize == 1);
        Assert.Throws<ArgumentException>(() => MemoryProfiles.Apply(o, "4GB"));
    }
}
