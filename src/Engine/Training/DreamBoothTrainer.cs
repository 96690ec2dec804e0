using DreamBooth.Engine.Models;
using System.Diagnostics;
using DreamBooth.Engine.IO;
using DreamBooth.Engine.Lora;
using DreamBooth.Engine.Models.Autoencoders;
using DreamBooth.Engine.Models.TextEncoders;
using DreamBooth.Engine.Models.Unets;
using DreamBooth.Engine.Pipelines;
using DreamBooth.Engine.Schedulers;
using DreamBooth.Engine.Tokenization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Training;

/// <summary>
/// diffusers' train_dreambooth.py as an engine type: class images, dataset, VAE-encoded latents, noise and timesteps
/// from one seeded generator, the DreamBooth loss, clipping, AdamW, LR schedule, atomic inference-ready checkpoints
/// that resume exactly, validation images, and the final pipeline folder.
/// </summary>
public sealed class DreamBoothTrainer : IDisposable
{
    readonly DreamBoothOptions _o;
    readonly TrainingEvents _events;
    readonly Device _device;
    readonly ScalarType _frozenDType;
    readonly ModelSource _source;

    ClipTokenizer _tokenizer = null!;
    ClipTextModel _textEncoder = null!;
    UNet2DConditionModel _unet = null!;
    AutoencoderKL _vae = null!;   // null once every latent distribution is cached and nothing decodes (ReleaseVae)
    double _latentScale;
    DDPMScheduler _noiseScheduler = null!;
    ConfigJson _schedulerConfig = null!;
    AdamW _optimizer = null!;
    GradientOffload? _gradientOffload;   // -OffloadOptimizerState on a GPU: gradients on the host
    Func<int, double> _lrLambda = null!;
    DreamBoothDataset _dataset = null!;
    List<(string Name, Parameter Param)> _trainable = null!;
    readonly List<CheckpointInfo> _checkpoints = new();
    // LoRA runs (issue 8): adapters on the frozen UNet (and text encoder); null in full fine-tuning.
    LoRANetwork? _unetLora;
    LoRANetwork? _textEncoderLora;

    // Memory and precision recipes: fp16 loss scaling, cached latents, precomputed prompt embeddings.
    DynamicLossScaler? _scaler;
    LatentCache _latentCache = null!;
    Dictionary<string, Tensor>? _promptEmbeddings;

    // Run state: everything a checkpoint must hold to continue bit-identically.
    TrainingState _state = null!;
    TrainingState? _lastSync;
    TrainingTrackers? _trackers;   // the run's loss log and TensorBoard events (--report_to)
    bool[] _isTextEncoderParameter = Array.Empty<bool>();   // per trainable parameter, in optimizer order
    bool _textEncoderFrozen;   // -StopTextEncoderTraining reached
    CaptionAugmentation _captions = null!;   // kohya-ss' shuffled / dropped caption tags
    int _epoch;   // the epoch being trained (caption dropout every N epochs)

    DreamBoothTrainer(DreamBoothOptions options, TrainingEvents events)
    {
        _o = options;
        _events = events;
        _device = DeviceSelection.Parse(options.Device);
        _frozenDType = options.MixedPrecision switch { "fp16" => ScalarType.Float16, "bf16" => ScalarType.BFloat16, _ => ScalarType.Float32 };
        _source = ModelSource.Resolve(options.Model);
        _captions = CaptionAugmentation.For(options);
    }

    /// <summary>Starts a new run. Validates everything before loading weights.</summary>
    public static TrainingResult Train(DreamBoothOptions options, TrainingEvents events, CancellationToken cancellation)
    {
        Preflight(options);
        using var trainer = new DreamBoothTrainer(options, events);
        return trainer.Run(null, cancellation);
    }

    /// <summary>Continues from OUTPUT (latest checkpoint) or OUTPUT/checkpoint-N, optionally to a new step count.</summary>
    /// <param name="memory">memory switches to turn on for the rest of the run (e.g. after running out of memory).</param>
    public static TrainingResult Resume(string path, int? maxTrainSteps, TrainingEvents events, CancellationToken cancellation,
        ResumeMemorySwitches? memory = null)
    {
        var checkpoint = CheckpointStore.FindForResume(path);
        var state = CheckpointStore.ReadState(checkpoint);
        // The run continues beside its checkpoint, wherever the output folder lives now.
        var options = state.Options with
        {
            MaxTrainSteps = maxTrainSteps ?? state.Options.MaxTrainSteps,
            OutputDirectory = Path.GetDirectoryName(Path.GetFullPath(checkpoint))!,
        };
        if (memory is not null)
        {
            (options, var turnedOn) = memory.ApplyTo(options);
            foreach (var s in turnedOn) events.Log?.Invoke($"Resuming with {s} (memory; what is learned stays the same).");
        }
        if (maxTrainSteps is int m && m <= state.GlobalStep)
            throw new ArgumentOutOfRangeException(nameof(maxTrainSteps), m, $"The checkpoint is already at step {state.GlobalStep}; -MaxTrainSteps must be larger to train further.");
        Preflight(options, resuming: true, startStep: state.GlobalStep);
        using var trainer = new DreamBoothTrainer(options, events);
        return trainer.Run((checkpoint, state), cancellation);
    }

    /// <summary>Input checks that must fail before any long work: folders, images, output writability.</summary>
    /// <param name="startStep">the step a resumed run starts from (what is left to save depends on it)</param>
    public static void Preflight(DreamBoothOptions o, bool resuming = false, int startStep = 0)
    {
        o.Validate();
        if (o.Deterministic) DeterministicAlgorithms.EnsureAvailable();   // not after minutes of loading
        var source = ModelSource.Resolve(o.Model);
        if (source.IsLoRA)
            throw new ArgumentException($"'{o.Model}' is a LoRA output (adapters only). Bake it into a full model first with Merge-DreamBoothLoRA, then train from that folder.");
        var folder = DiffusersPipelineFolder.Open(source.BaseModel);
        // Weights that cannot load (pickle-only, several variants and no default, missing shards) fail now, not after the class images.
        DiffusersPipelineFolder.ResolveWeightsIn(source.UnetDirectory ?? folder.ComponentDirectory("unet"));
        DiffusersPipelineFolder.ResolveWeightsIn(source.TextEncoderDirectory ?? folder.ComponentDirectory("text_encoder"));
        folder.ResolveWeights("vae");
        // An inpainting model's UNet also takes a mask and a masked image (9 channels): this trainer feeds it latents only.
        var unetConfig = Models.Unets.UNet2DConditionConfig.Load(Path.Combine(source.UnetDirectory ?? folder.ComponentDirectory("unet"), "config.json"));
        int latentChannels = Models.Autoencoders.AutoencoderKLConfig.Load(Path.Combine(folder.ComponentDirectory("vae"), "config.json")).LatentChannels;
        if (unetConfig.InChannels != latentChannels)
            throw new ArgumentException($"'{o.Model}' has a UNet of {unetConfig.InChannels} input channels for {latentChannels}-channel latents (an inpainting model): DreamBooth trains text-to-image models. Train the base model (e.g. stable-diffusion-v1-5) and use -MaskImage with it, or the inpainting model as it is.");
        if (o.ClipSkip > 0)
        {
            int layers = Models.TextEncoders.ClipTextConfig.Load(Path.Combine(source.TextEncoderDirectory ?? folder.ComponentDirectory("text_encoder"), "config.json")).NumHiddenLayers;
            if (o.ClipSkip >= layers)
                throw new ArgumentOutOfRangeException(nameof(o.ClipSkip), o.ClipSkip, $"-ClipSkip must be less than the text encoder's {layers} layers (1 = the penultimate layer).");
        }
        // What the weights, gradients and optimizer state alone take must fit, or Linux's OOM killer ends the process later.
        var parameters = PipelineMemory.Count(source);   // from the headers, once: the memory and disk checks below
        TrainingMemoryEstimate.EnsureFits(o, parameters, DeviceSelection.Parse(o.Device).type == DeviceType.CPU, HostMemory.AvailableBytes());
        // The instance images as the run will list them: missing or empty folders and empty caption files fail now.
        var instancesOnly = DreamBoothDataset.FromConcepts(o.AllConcepts, withPrior: false, o.NumClassImages, o.Resolution, o.CenterCrop,
            o.RandomFlip, o.CaptionExtension, o.EnableBucket ? AspectRatioBuckets.For(o) : null);
        var classFolders = o.WithPriorPreservation ? o.AllConcepts.GroupBy(c => c.ClassFolderKey).Select(g => g.First().ClassDataDirectory!).ToList() : new List<string>();
        // Unreadable images fail now, naming the file, not an hour into the run.
        foreach (var f in instancesOnly.InstanceImages.Distinct()) ImageLoader.LoadRgb(f).Dispose();
        foreach (var classFolder in classFolders.Where(Directory.Exists))
            foreach (var f in ImageFiles.List(classFolder).Take(o.NumClassImages)) ImageLoader.LoadRgb(f).Dispose();
        // Checked without creating anything (Start-DreamBoothTraining -WhatIf runs Preflight too); the run creates them.
        DiskSpace.EnsureWritable(o.OutputDirectory, $"Cannot write to output folder '{o.OutputDirectory}'", "Choose a folder you can write to.");
        if (TrainingTrackers.DirectoryFor(o) is string logs)
            DiskSpace.EnsureWritable(logs, $"Cannot create the logging folder '{logs}'", "Choose another -LoggingDirectory, or -ReportTo none.");
        // Checkpoints (about 10 GB each for SD-1.4 with AdamW) and the model must fit, or the disk fills hours in.
        int instances = instancesOnly.InstanceImages.Count;
        int datasetLength = o.WithPriorPreservation ? Math.Max(instances, o.NumClassImages * classFolders.Count) : instances;
        TrainingDiskEstimate.EnsureFits(o, parameters, startStep, instancesOnly.BatchesPerEpoch(o.TrainBatchSize, datasetLength), DiskSpace.FreeBytes(o.OutputDirectory));
        if (!resuming && CheckpointStore.List(o.OutputDirectory).Count > 0)
            throw new InvalidOperationException($"'{o.OutputDirectory}' already holds checkpoints of a run. Continue it with Resume-DreamBoothTraining -Path '{o.OutputDirectory}', or choose another -OutputDirectory.");
    }

    TrainingResult Run((string Path, TrainingState State)? resume, CancellationToken cancellation)
    {
        var total = Stopwatch.StartNew();
        using var deviceMemory = DeviceMemoryMonitor.Start(_device);   // CUDA only: what the recipe needs of the card
        using var tf32 = Tf32.Allow(_o.AllowTf32);
        using var deterministic = DeterministicAlgorithms.Enable(_o.Deterministic);
        torch.set_num_threads(Math.Max(1, Environment.ProcessorCount));
        CpuAllocatorPolicy.UseLowMemoryHeap(_o.GradientCheckpointing || _o.Use8BitAdam || _o.OffloadOptimizerState);
        if (_o.WithPriorPreservation) EnsureClassImages(cancellation);

        if (LowPrecisionOnCpu.Warning(_device, _frozenDType, "-MixedPrecision " + _o.MixedPrecision) is string slow) _events.Warning?.Invoke(slow);
        if (LowPrecisionOnCpu.Notice(_device, _frozenDType, "-MixedPrecision " + _o.MixedPrecision) is string emulated) _events.Log?.Invoke(emulated);
        if (_o.GradientCheckpointing) _events.Log?.Invoke(GradientCheckpointingMode.Describe(_o.GradientCheckpointingMode, _device.type == DeviceType.CPU));
        Report("loading", 0, 0, 0, null, null, 0, total.Elapsed, "Loading models from " + _source.BaseModel);
        LoadModels(resume?.Path);
        _dataset = DreamBoothDataset.FromConcepts(_o.AllConcepts, _o.WithPriorPreservation, _o.NumClassImages, _o.Resolution, _o.CenterCrop,
            _o.RandomFlip, _o.CaptionExtension, _o.EnableBucket ? AspectRatioBuckets.For(_o) : null);
        if (_o.AllConcepts.Count > 1 || _o.Repeats > 1)
            _events.Log?.Invoke($"Concepts: {string.Join("; ", _o.AllConcepts.Select(c => $"'{c.InstancePrompt}' ({ImageFiles.List(c.InstanceDataDirectory).Count} images"
                + (c.Repeats > 1 ? $" × {c.Repeats} repeats" : "") + (_o.WithPriorPreservation ? $", class '{c.ClassPrompt}'" : "") + ")"))}.");
        if (_o.EnableBucket)
            _events.Log?.Invoke("Aspect-ratio buckets (-EnableBucket): " + string.Join(", ", _dataset.BucketsOfImages().GroupBy(b => b)
                .OrderByDescending(g => g.Count()).Select(g => $"{g.Key.Width}x{g.Key.Height}: {g.Count()} image(s)")) + ".");
        if (_o.CaptionExtension is not null)
        {
            int captioned = _dataset.InstancePrompts!.Count(p => p != _o.InstancePrompt);
            _events.Log?.Invoke($"Captions ({InstanceCaptions.Normalize(_o.CaptionExtension)}): {captioned} of {_dataset.InstanceImages.Count} instance images have their own prompt; the others use -InstancePrompt.");
            // CLIP sees at most model_max_length tokens (77); the rest of a longer caption is cut off, as in diffusers.
            var tooLong = _dataset.InstancePrompts!.Distinct().Where(p => _tokenizer.Encode(p).Length > _tokenizer.ModelMaxLength).ToList();
            if (tooLong.Count > 0)
                _events.Warning?.Invoke($"{tooLong.Count} caption(s) are longer than the text encoder's {_tokenizer.ModelMaxLength} tokens and are cut off there, e.g. '{tooLong[0]}'. Shorten them to keep their ends.");
        }

        if (_captions.IsActive)
            _events.Log?.Invoke("Caption augmentation (kohya-ss): " + string.Join(", ", new[]
            {
                _o.ShuffleCaption ? $"tags shuffled after the first {_o.KeepTokens}" + (string.IsNullOrEmpty(_o.KeepTokensSeparator) ? "" : $" (or the part before '{_o.KeepTokensSeparator}')") : null,
                _o.CaptionDropoutRate > 0 ? $"{_o.CaptionDropoutRate * 100:0.##}% of captions empty" : null,
                _o.CaptionDropoutEveryNEpochs > 0 ? $"all captions empty every {_o.CaptionDropoutEveryNEpochs} epochs" : null,
                _o.CaptionTagDropoutRate > 0 ? $"{_o.CaptionTagDropoutRate * 100:0.##}% of tags dropped" : null,
            }.OfType<string>()) + (_o.TrainTextEncoder ? "." : "; the frozen text encoder stays loaded to encode them each step."));

        int batchesPerEpoch = _dataset.BatchesPerEpoch(_o.TrainBatchSize);
        int stepsPerEpoch = (batchesPerEpoch + _o.GradientAccumulationSteps - 1) / _o.GradientAccumulationSteps;
        int maxSteps = _o.MaxTrainSteps ?? _o.NumTrainEpochs * stepsPerEpoch;
        int epochs = (maxSteps + stepsPerEpoch - 1) / stepsPerEpoch;
        double lr = _o.ScaleLearningRate ? _o.LearningRate * _o.GradientAccumulationSteps * _o.TrainBatchSize : _o.LearningRate;
        _lrLambda = LearningRateSchedules.Create(_o.LearningRateScheduler, _o.LearningRateWarmupSteps, maxSteps, _o.LearningRateNumCycles, _o.LearningRatePower, baseLr: lr);
        CreateOptimizer();
        _isTextEncoderParameter = _trainable.Select(p => p.Name.StartsWith("text_encoder.", StringComparison.Ordinal)).ToArray();
        if (_o.TextEncoderLearningRate is double teLr)
        {
            double teBase = _o.ScaleLearningRate ? teLr * _o.GradientAccumulationSteps * _o.TrainBatchSize : teLr;
            _optimizer.LearningRateFactors = _isTextEncoderParameter.Select(te => te ? teBase / lr : 1.0).ToList();
        }
        using var collectGradients = _gradientOffload?.CollectAfterCheckpointedBlocks();
        if (_o.MixedPrecision == "fp16") _scaler = new DynamicLossScaler();
        if (_o.CacheLatents) CacheLatents(total);
        else _latentCache = new LatentCache(_vae, _frozenDType, _device);
        if (_o.CacheLatents || (!_events.EncodeViewsAsTheyCome && _dataset.HasFixedViews() && EncodeFixedViews(total))) ReleaseVae();
        if (!_o.TrainTextEncoder) PrecomputePromptEmbeddings();

        if (resume is { } r)
        {
            _state = r.State;
            _state.Options = _o;   // what this run uses (a new -MaxTrainSteps, resume switches, where the folder is now)
            _optimizer.LoadState(Path.Combine(r.Path, CheckpointStore.OptimizerFile));
            if (_scaler is not null && _state.LossScaler is not null) _scaler.LoadState(_state.LossScaler);
            _events.Log?.Invoke($"Resuming from {r.Path} at step {_state.GlobalStep} (epoch {_state.Epoch}, batch {_state.BatchInEpoch}).");
        }
        else
        {
            _state = TrainingState.New(_o, _source.BaseModel);
        }
        using var trackers = TrainingTrackers.Open(_o, _state.GlobalStep);
        _trackers = trackers;
        if (trackers.Directory is not null) _events.Log?.Invoke($"Logging loss and learning rate ({_o.ReportTo}) to {trackers.Directory}.");
        using var generator = new torch.Generator((ulong)_o.Seed);
        if (_state.GeneratorState is not null) RngState.Restore(generator, _state.GeneratorState);
        var random = _state.DataRandomState is null ? new Pcg32((ulong)_o.Seed) : Pcg32.Deserialize(_state.DataRandomState);

        _events.Log?.Invoke("***** Running training *****");
        _events.Log?.Invoke($"  Num examples = {_dataset.Length}");
        _events.Log?.Invoke($"  Num batches each epoch = {batchesPerEpoch}");
        _events.Log?.Invoke($"  Num Epochs = {epochs}");
        _events.Log?.Invoke($"  Instantaneous batch size per device = {_o.TrainBatchSize}");
        _events.Log?.Invoke($"  Gradient Accumulation steps = {_o.GradientAccumulationSteps}");
        _events.Log?.Invoke($"  Total optimization steps = {maxSteps}");

        _unet.train();
        if (_o.TrainTextEncoder) _textEncoder.train();
        var stepClock = Stopwatch.StartNew();
        int stepsThisSession = 0;
        double lastLoss = double.NaN;
        bool completed = true;
        _lastSync = _state.Snapshot(generator, random);

        try
        {
            for (int epoch = _state.Epoch; epoch < epochs && _state.GlobalStep < maxSteps; epoch++)
            {
                if (_state.EpochOrder is null || _state.Epoch != epoch)
                {
                    _state.Epoch = epoch;
                    _state.BatchInEpoch = 0;
                    _state.EpochOrder = _dataset.EpochOrder(_o.TrainBatchSize, random);
                }
                var batches = _dataset.Batches(_state.EpochOrder, _o.TrainBatchSize);
                _epoch = epoch;
                int micro = 0;
                double accumulated = 0;
                for (int b = _state.BatchInEpoch; b < batchesPerEpoch; b++)
                {
                    cancellation.ThrowIfCancellationRequested();
                    FreezeTextEncoderWhenItsStepsAreDone();
                    accumulated += TrainMicroBatch(batches[b], generator, random);
                    micro++;
                    bool endOfEpoch = b == batchesPerEpoch - 1;
                    if (micro % _o.GradientAccumulationSteps != 0 && !endOfEpoch) continue;

                    double stepLr = lr * _lrLambda(_state.GlobalStep);
                    double gradNorm;
                    using (torch.NewDisposeScope())   // the handles p.grad returns, released before ZeroGrad frees the gradients
                    {
                        // The gradients in parameter order: the host copies when offloaded, else the parameters' own.
                        var grads = _gradientOffload?.Gradients ?? _trainable.Select(p => (Tensor?)p.Param.grad).ToList();
                        // A text encoder whose training has stopped keeps its weights: no update, no decay, no norm share.
                        if (_textEncoderFrozen) grads = grads.Select((g, i) => _isTextEncoderParameter[i] ? null : g).ToList();
                        _events.AfterBackward?.Invoke(_state.GlobalStep, grads);
                        // fp16: unscale, and on inf/NaN skip the step and halve the scale (GradScaler); otherwise clip and step.
                        bool scaledFinite = _scaler?.UnscaleAndCheck(grads) ?? true;
                        // Clipping's factor is applied as AdamW reads each gradient (one pass over them less).
                        float clip;
                        (gradNorm, clip) = scaledFinite ? GradientClipping.ClipCoefficientOfGradients(grads.OfType<Tensor>().ToList(), _o.MaxGradNorm) : (double.PositiveInfinity, 1f);
                        if (double.IsFinite(gradNorm)) _optimizer.Step(stepLr, clip, grads);
                    }
                    if (!double.IsFinite(gradNorm))
                    {
                        _events.Warning?.Invoke(_scaler is not null
                            ? $"Step {_state.GlobalStep + 1}: fp16 gradients overflowed at loss scale {_scaler.LossScale}; the update was skipped and the scale halved."
                            : $"Step {_state.GlobalStep + 1}: gradient norm is {gradNorm}; the update was skipped so the weights stay intact.");
                    }
                    if (_scaler is not null) { _scaler.Update(double.IsFinite(gradNorm)); _state.LossScaler = _scaler.GetState(); }
                    _optimizer.ZeroGrad(_o.SetGradsToNone);
                    _gradientOffload?.Zero(_o.SetGradsToNone);
                    _state.GlobalStep++;
                    _state.BatchInEpoch = b + 1;
                    lastLoss = accumulated / Math.Max(1, micro);
                    _state.SmoothedLoss = double.IsNaN(_state.SmoothedLoss) ? lastLoss : 0.9 * _state.SmoothedLoss + 0.1 * lastLoss;
                    accumulated = 0; micro = 0;
                    stepsThisSession++;
                    _lastSync = _state.Snapshot(generator, random);
                    if (stepsThisSession == 1) _events.Log?.Invoke($"Optimizer state: {_optimizer.StateBytes / 1073741824.0:F2} GB{(_o.Use8BitAdam ? " (8-bit moments)" : "")}"
                        + (_optimizer.MasterBytes > 0 ? $"; float32 master weights on the host: {_optimizer.MasterBytes / 1073741824.0:F2} GB" : ""));   // memory recipes: shows what 8-bit Adam saves

                    double rate = stepsThisSession / Math.Max(1e-9, stepClock.Elapsed.TotalSeconds);
                    Report("training", _state.GlobalStep, maxSteps, epoch, lastLoss, _state.SmoothedLoss, stepLr, total.Elapsed, null, rate);
                    trackers.LogStep(_state.GlobalStep, epoch, lastLoss, stepLr);

                    bool epochCheckpoint = endOfEpoch && _o.CheckpointingEpochs is int every && (epoch + 1) % every == 0;
                    if ((_state.GlobalStep % _o.CheckpointingSteps == 0 || epochCheckpoint) && _state.GlobalStep < maxSteps)
                        SaveCheckpoint(_lastSync, lastLoss, stepLr);
                    if (_o.HasValidation && _state.GlobalStep % _o.ValidationSteps == 0)
                    {
                        // Zeroed gradients are not needed until the next backward, which adds into zeros exactly as
                        // into none: release them so the validation images have their room (3.2 GB for SD-1.4).
                        _optimizer.ZeroGrad(setToNone: true);
                        Validate(_state.GlobalStep, cancellation);
                    }
                    if (_state.GlobalStep >= maxSteps) break;
                }
            }
        }
        catch (Exception e) when (OutOfMemory.Is(e) || e is HostMemoryShortfallException)
        {
            // Out of memory (or a validation image refused for the host memory it would take): free the failed step's gradients, keep what was learned up to the last optimizer step
            // (resumable, as on Ctrl+C), and say which switches lower memory.
            completed = false;
            _optimizer.ZeroGrad(setToNone: true);
            _gradientOffload?.Zero(setToNone: true);
            string? saved = resume?.Path, saveError = null;
            bool isNew = false;
            if (_lastSync is not null && stepsThisSession > 0)
            {
                try
                {
                    _events.Log?.Invoke($"Out of memory: saving a resumable checkpoint at step {_lastSync.GlobalStep}.");
                    SaveCheckpoint(_lastSync, lastLoss, lr * _lrLambda(Math.Max(0, _lastSync.GlobalStep - 1)), prune: false);
                    saved = _checkpoints[^1].Path; isNew = true;
                }
                catch (Exception se) { saveError = se.Message; saved = null; }
            }
            int step = (_lastSync?.GlobalStep ?? _state.GlobalStep) + 1;
            throw new TrainingOutOfMemoryException(
                OutOfMemoryAdvice.Build(_o, _device.ToString(), step, OutOfMemory.Describe(e), saved, isNew, saveError), e, step, saved);
        }
        catch (OperationCanceledException)
        {
            // Ctrl+C: keep what was learned up to the last optimizer step, resumable.
            completed = false;
            if (_lastSync is not null && stepsThisSession > 0)
            {
                _events.Log?.Invoke($"Stopping: saving a resumable checkpoint at step {_lastSync.GlobalStep}.");
                SaveCheckpoint(_lastSync, lastLoss, lr * _lrLambda(Math.Max(0, _lastSync.GlobalStep - 1)), prune: false);
            }
            throw;
        }

        Report("saving", _state.GlobalStep, maxSteps, _state.Epoch, lastLoss, _state.SmoothedLoss, 0, total.Elapsed, "Saving the pipeline to " + _o.OutputDirectory);
        SaveCheckpoint(_lastSync!, lastLoss, lr * _lrLambda(Math.Max(0, _state.GlobalStep - 1)), prune: true, final: true);
        SavePipeline();
        deviceMemory.Sample();
        if (deviceMemory.PeakBytes is long peak) _events.Log?.Invoke($"Peak device memory: {peak / 1073741824.0:F2} GB ({deviceMemory.Source}).");
        if (_gradientOffload is not null)
        {
            _events.Log?.Invoke($"Gradients held by the device at once: at most {_gradientOffload.PeakCollectedBytes / 1073741824.0:F2} GB of {_gradientOffload.HostBytes / 1073741824.0:F2} GB (the rest on the host).");
            _events.GradientOffloadDone?.Invoke(_gradientOffload);
        }
        return new TrainingResult(Path.GetFullPath(_o.OutputDirectory), _state.GlobalStep, _state.Epoch + 1, lastLoss, total.Elapsed,
            completed, _checkpoints.ToList(), _o) { PeakDeviceMemoryBytes = deviceMemory.PeakBytes };
    }

    /// <summary>One forward/backward on a micro-batch; returns its loss (before division by the accumulation steps).</summary>
    double TrainMicroBatch(int[] indices, torch.Generator generator, Pcg32 random)
    {
        using var scope = torch.NewDisposeScope();
        var planned = indices.Select(i => _dataset.Plan(i, random)).ToList();
        var views = planned.Select(p => p.Instance).Concat(planned.Where(p => p.Class is not null).Select(p => p.Class!.Value)).ToList();
        var prompts = indices.Select(i => _dataset.InstancePromptOf(i, _o.InstancePrompt))
            .Select(p => _captions.IsActive ? _captions.Apply(p, _epoch, random) : p).ToList()
            .Concat(indices.Where((_, k) => planned[k].Class is not null).Select(i => _dataset.ClassPromptOf(i, _o.ClassPrompt ?? ""))).ToList();
        _events.BatchPrompts?.Invoke(prompts);

        Tensor total;
        if (views.Select(v => (v.Width, v.Height)).Distinct().Count() == 1)
            total = Loss(views, prompts, _o.WithPriorPreservation, instancePart: true, generator);
        else
        {
            // Aspect-ratio buckets: images of different sizes cannot share a forward, so each size gets its own. The loss
            // stays diffusers' instance + prior_loss_weight · prior, each the mean over its images (min-SNR weighting on
            // the instance part only, as there).
            int n = planned.Count;
            total = MeanLossBySize(views.Take(n).ToList(), prompts.Take(n).ToList(), instancePart: true, generator);
            if (views.Count > n) total = total + _o.PriorLossWeight * MeanLossBySize(views.Skip(n).ToList(), prompts.Skip(n).ToList(), instancePart: false, generator);
        }
        var loss = total / _o.GradientAccumulationSteps;
        if (_scaler is not null) loss = _scaler.Scale(loss);
        loss.backward();
        GradientCheckpoint.ThrowPendingError();
        _gradientOffload?.Collect();   // what the checkpointed blocks' callbacks did not take: parameters outside them
        return total.item<float>();
    }

    /// <summary>
    /// The mean DreamBooth loss of views of several sizes: one forward per size, in order of first appearance, each
    /// group's mean weighted by its share of the images (the mean over all of them when every image is one size).
    /// </summary>
    Tensor MeanLossBySize(IReadOnlyList<ImageView> views, IReadOnlyList<string> prompts, bool instancePart, torch.Generator generator)
    {
        Tensor? sum = null;
        foreach (var group in Enumerable.Range(0, views.Count).GroupBy(i => (views[i].Width, views[i].Height)))
        {
            var loss = Loss(group.Select(i => views[i]).ToList(), group.Select(i => prompts[i]).ToList(), false, instancePart, generator);
            if (group.Count() != views.Count) loss = loss * ((double)group.Count() / views.Count);
            sum = sum is null ? loss : sum + loss;
        }
        return sum!;
    }

    /// <summary>
    /// The DreamBooth loss of views of one size: latents, noise, timesteps, text embeddings, UNet prediction. The
    /// per-sample weightings (min-SNR, debiased estimation) apply to instance images only, as diffusers' min-SNR does.
    /// </summary>
    /// <param name="instancePart">the views are instance images (with <paramref name="withPrior"/>: their first half)</param>
    Tensor Loss(IReadOnlyList<ImageView> views, IReadOnlyList<string> prompts, bool withPrior, bool instancePart, torch.Generator generator)
    {
        // Each view's latent distribution is encoded once (LatentCache); the sample is drawn fresh every step.
        Tensor latents;
        using (torch.no_grad())
        using (var dist = _latentCache.Batch(views, _dataset.Load))
            latents = (dist.Sample(generator) * _latentScale).to(ScalarType.Float32);
        var noise = torch.randn(latents.shape, dtype: ScalarType.Float32, generator: generator).to(_device);
        if (_o.EffectiveNoiseOffset > 0)
        {
            var offsetNoise = torch.randn(new[] { latents.shape[0], latents.shape[1], 1, 1 }, dtype: ScalarType.Float32, generator: generator).to(_device);
            // kohya-ss' --adaptive_noise_scale: the offset grows with the latents' own mean brightness per channel.
            noise = _o.AdaptiveNoiseScale is double adaptive
                ? noise + (_o.EffectiveNoiseOffset + adaptive * latents.mean(new long[] { 2, 3 }, keepdim: true).abs()).clamp_min(0) * offsetNoise
                : noise + _o.EffectiveNoiseOffset * offsetNoise;
        }
        if (_o.MultiresNoiseIterations > 0) noise = MultiresNoise.Apply(noise, _o.MultiresNoiseIterations, _o.MultiresNoiseDiscount, generator);
        var inputNoise = _o.InputPerturbation > 0
            ? noise + _o.InputPerturbation * torch.randn(latents.shape, dtype: ScalarType.Float32, generator: generator).to(_device) : null;
        // The Huber losses draw one timestep for the batch (their parameter follows it); l2 one per sample, as diffusers.
        int T = _noiseScheduler.Config.NumTrainTimesteps;
        bool huber = _o.LossType != "l2";
        var timesteps = torch.randint(0, T, new[] { huber ? 1 : latents.shape[0] }, dtype: ScalarType.Int64, generator: generator);
        double huberC = 0;
        if (huber)
        {
            int t = (int)timesteps.item<long>();
            huberC = HuberLoss.ScheduledC(_o.HuberSchedule, _o.HuberC, t, T, _noiseScheduler.AlphasCumprod[t].item<float>());
            timesteps = timesteps.repeat(latents.shape[0]);
        }
        timesteps = timesteps.to(_device);

        // Autocast equivalent for the trained models' forward (accelerate wraps both the UNet's and a trained text
        // encoder's); with LoRA the frozen UNet may be held in the mixed-precision dtype (as train_dreambooth_lora.py
        // does) while the adapters stay fp32.
        var compute = MixedPrecision.Parse(_o.MixedPrecision);

        // A frozen text encoder's embeddings were computed once (PrecomputePromptEmbeddings).
        Tensor context;
        if (_o.TrainTextEncoder)
            using (MixedPrecision.Autocast(compute))
            using (_textEncoderFrozen ? torch.no_grad() : null)
                context = EncodePrompts(_tokenizer.EncodeBatch(prompts.ToList()).ToTensor().to(_device));
        else
            context = torch.cat(prompts.Select(PromptEmbedding).ToArray(), 0);

        var unetDType = UnetDType;
        return DreamBoothLoss.Compute((x, t, c) =>
            {
                using var _ = MixedPrecision.Autocast(compute);
                return unetDType == ScalarType.Float32 ? _unet.forward(x, t, c) : _unet.forward(x.to(unetDType), t, c.to(unetDType));
            }, _noiseScheduler, latents, noise, timesteps, context,
            withPrior, _o.PriorLossWeight, instancePart ? _o.SnrGamma : null, _o.LossType, huberC, inputNoise, instancePart && _o.DebiasedEstimationLoss).Loss;
    }

    /// <summary>
    /// A frozen text encoder's embedding of a prompt: computed once where the prompts are fixed, each time for captions
    /// that -ShuffleCaption and the caption dropouts change.
    /// </summary>
    Tensor PromptEmbedding(string prompt)
    {
        if (_promptEmbeddings!.TryGetValue(prompt, out var embedding)) return embedding;
        using (torch.no_grad())
            return EncodePrompts(_tokenizer.EncodeBatch(new[] { prompt }).ToTensor().to(_device)).to(ScalarType.Float32);
    }

    /// <summary>The text encoder's output the UNet is conditioned on: its last layer's, or -ClipSkip layers before.</summary>
    Tensor EncodePrompts(Tensor ids) => _o.ClipSkip > 0 ? _textEncoder.EncodeForDiffusion(ids, _o.ClipSkip) : _textEncoder.Forward(ids).LastHiddenState;

    /// <summary>
    /// -StopTextEncoderTraining: once that many optimizer steps are done (also when a resume starts past them), the
    /// text encoder's trained parameters stop taking gradients and updates; the UNet trains on.
    /// </summary>
    void FreezeTextEncoderWhenItsStepsAreDone()
    {
        if (_textEncoderFrozen || _o.StopTextEncoderTraining is not int stop || _state.GlobalStep < stop) return;
        for (int i = 0; i < _trainable.Count; i++)
        {
            if (!_isTextEncoderParameter[i]) continue;
            _trainable[i].Param.requires_grad = false;
            _trainable[i].Param.grad = null;
        }
        _textEncoderFrozen = true;
        _events.Log?.Invoke($"Text encoder training stopped after step {stop} (-StopTextEncoderTraining); the UNet trains on.");
    }

    void LoadModels(string? resumeCheckpoint)
    {
        var layout = DiffusersPipelineFolder.Open(_source.BaseModel);
        _tokenizer = ClipTokenizer.FromPretrained(layout.ComponentDirectory("tokenizer"));
        // Trainable weights are fp32 master weights; frozen ones may be held in the mixed-precision dtype.
        // LoRA: the base weights never change, so a resume reloads them from the source and only the adapters from the checkpoint.
        string unetDir = resumeCheckpoint is not null && !_o.LoRA ? Path.Combine(resumeCheckpoint, "unet") : _source.UnetDirectory ?? layout.ComponentDirectory("unet");
        string teDir = resumeCheckpoint is not null && _o.TrainTextEncoder && !_o.LoRA ? Path.Combine(resumeCheckpoint, "text_encoder")
            : _source.TextEncoderDirectory ?? layout.ComponentDirectory("text_encoder");
        _unet = UNet2DConditionModel.FromPretrained(unetDir, UnetDType, _device);
        _textEncoder = ClipTextModel.FromPretrained(teDir,
            !_o.TrainTextEncoder ? _frozenDType : _o.LoRA ? FrozenUnderGradDType : ScalarType.Float32, _device);
        _vae = AutoencoderKL.FromPretrained(layout.ComponentDirectory("vae"), _frozenDType, _device);
        _latentScale = _vae.ScalingFactor;
        _schedulerConfig = SchedulerConfig.LoadJson(Path.Combine(layout.ComponentDirectory("scheduler"), "scheduler_config.json"));
        _noiseScheduler = (DDPMScheduler)SchedulerFactory.Create("DDPMScheduler", _schedulerConfig);
        foreach (var p in _vae.parameters()) p.requires_grad = false;
        if (!_o.TrainTextEncoder) foreach (var p in _textEncoder.parameters()) p.requires_grad = false;
        _vae.eval();
        _textEncoder.eval();
        if (_o.GradientCheckpointing)
        {
            // The recompute in backward runs in the autocast state of the forward, as torch.utils.checkpoint restores it.
            _unet.GradientCheckpointing = true;
            _unet.SelectiveCheckpointing = GradientCheckpointingMode.IsSelective(_o, _device.type == DeviceType.CPU);
            _unet.CheckpointRunner = GradientCheckpoint.RunInForwardAutocast;
            if (_o.TrainTextEncoder) { _textEncoder.GradientCheckpointing = true; _textEncoder.CheckpointRunner = GradientCheckpoint.RunInForwardAutocast; }
        }
        if (_o.LoRA) { CreateLoRA(resumeCheckpoint); return; }
        _trainable = _unet.named_parameters().Select(p => ("unet." + p.name, p.parameter)).ToList();
        if (_o.TrainTextEncoder) _trainable.AddRange(_textEncoder.named_parameters().Select(p => ("text_encoder." + p.name, p.parameter)));
    }

    /// <summary>LoRA: freezes the base models, attaches PEFT-initialised adapters (or the checkpoint's), trains only them.</summary>
    void CreateLoRA(string? resumeCheckpoint)
    {
        foreach (var p in _unet.parameters()) p.requires_grad = false;
        foreach (var p in _textEncoder.parameters()) p.requires_grad = false;
        // Own generator: adapter init must not shift the noise/timestep stream that resume replays.
        using var init = new torch.Generator((ulong)_o.Seed);
        _unetLora = LoRANetwork.Create(_unet, LoRATargets.Unet, _o.LoRARank, _o.EffectiveLoRAAlpha, init);
        if (_o.TrainTextEncoder) _textEncoderLora = LoRANetwork.Create(_textEncoder, LoRATargets.TextEncoder, _o.LoRARank, _o.EffectiveLoRAAlpha, init);
        if (resumeCheckpoint is not null)
        {
            using var saved = LoRAWeights.Load(Path.Combine(resumeCheckpoint, LoRAWeights.FileName));
            _unetLora.LoadWeights(saved.For(LoRATargets.Unet));
            _textEncoderLora?.LoadWeights(saved.For(LoRATargets.TextEncoder));
        }
        _trainable = LoRANetworks().SelectMany(n => n.NamedParameters()).ToList();
    }

    /// <summary>fp32 master weights when the UNet trains; the frozen dtype when only LoRA adapters do.</summary>
    ScalarType UnetDType => _o.LoRA ? FrozenUnderGradDType : ScalarType.Float32;

    /// <summary>
    /// A frozen model that gradients flow through (the UNet or text encoder under LoRA) in the frozen dtype, except
    /// where the CPU computes that dtype in fp32 (<see cref="LowPrecisionOnCpu.Emulates"/>): there backward would keep an
    /// fp32 copy of every weight it multiplied by, more than holding the model in fp32.
    /// </summary>
    ScalarType FrozenUnderGradDType => LowPrecisionOnCpu.Emulates(_device, _frozenDType) ? ScalarType.Float32 : _frozenDType;

    IEnumerable<LoRANetwork> LoRANetworks() => new[] { _unetLora, _textEncoderLora }.OfType<LoRANetwork>();


    /// <summary>-CacheLatents: encode every image once (center crop, no flip); the VAE is then not run per step.</summary>
    void CacheLatents(Stopwatch total)
    {
        _events.Log?.Invoke("Caching latents: each image is encoded once (center crop, no random flip), the VAE is not run per step.");
        _latentCache = LatentCache.Build(_dataset, _vae, _frozenDType, _device, CachingProgress(total));
    }

    /// <summary>
    /// Every image has one view (no random flip; a center crop, or nothing to crop): its latent distribution is the
    /// same every time, so encode them all now, as -CacheLatents does, rather than in the first epoch. The run is the
    /// same bit for bit (the distributions are what the first epoch would have cached; each step still draws its own
    /// sample); what changes is that the VAE can be freed before the first step. False where the views outgrow the cache.
    /// </summary>
    bool EncodeFixedViews(Stopwatch total)
    {
        _events.Log?.Invoke("Every image has one view (no random flip or crop): encoding each once before training.");
        return _latentCache.EncodeAll(_dataset, CachingProgress(total));
    }

    Action<int, int> CachingProgress(Stopwatch total) =>
        (i, n) => Report("caching", i, n, 0, null, null, 0, total.Elapsed, $"Encoding image {i}/{n}");

    /// <summary>
    /// With every latent distribution cached, the VAE (~0.3 GB for SD's) is freed unless validation images still
    /// decode with it, as the frozen text encoder is (<see cref="PrecomputePromptEmbeddings"/>). The final pipeline copies
    /// the VAE's files, so nothing else needs it.
    /// </summary>
    void ReleaseVae()
    {
        if (_o.HasValidation) return;
        _latentCache.ReleaseVae();
        _vae.Dispose();
        _vae = null!;
        _events.Log?.Invoke("Latent distributions cached; the VAE was freed.");
    }

    /// <summary>
    /// A frozen text encoder maps the prompts (instance and class, and each caption) to the same embeddings every step
    /// (diffusers' --pre_compute_text_embeddings): compute them once and free the encoder (~0.5 GB for CLIP ViT-L) unless
    /// validation still needs it.
    /// </summary>
    void PrecomputePromptEmbeddings()
    {
        _promptEmbeddings = new();
        using (torch.no_grad())
            foreach (var prompt in (_dataset.InstancePrompts ?? Array.Empty<string>()).Prepend(_o.InstancePrompt).Append(_o.ClassPrompt ?? "")
                .Concat(_dataset.ClassPrompts ?? Array.Empty<string>()).Distinct())
            {
                using var scope = torch.NewDisposeScope();
                var ids = _tokenizer.EncodeBatch(new[] { prompt }).ToTensor().to(_device);
                _promptEmbeddings[prompt] = EncodePrompts(ids).to(ScalarType.Float32).DetachFromDisposeScope();
            }
        if (!_o.HasValidation && !_captions.IsActive)
        {
            _textEncoder.Dispose();
            _textEncoder = null!;
            _events.Log?.Invoke("Prompt embeddings precomputed; the frozen text encoder was freed.");
        }
    }

    void CreateOptimizer()
    {
        _optimizer = new AdamW(_trainable, new AdamWOptions
        {
            Beta1 = _o.AdamBeta1, Beta2 = _o.AdamBeta2, Eps = _o.AdamEpsilon, WeightDecay = _o.AdamWeightDecay,
            Use8Bit = _o.Use8BitAdam, StateDevice = _o.OffloadOptimizerState ? torch.CPU : null,
        });
        // DeepSpeed's offload moves the gradients too; on the CPU there is nowhere to move them (the test hook makes the
        // same moves there, so the path runs without a GPU).
        if (_o.OffloadOptimizerState && (_device.type != DeviceType.CPU || _events.OffloadGradientsOnCpu))
        {
            _gradientOffload = new GradientOffload(_trainable);
            _optimizer.TreatParametersAsRemote = _device.type == DeviceType.CPU;   // the test hook: master copies too
            _events.Log?.Invoke("-OffloadOptimizerState: gradients move to the host as each checkpointed block's backward produces them.");
        }
    }

    /// <summary>Fills each concept's class folder up to -NumClassImages with its class prompt (one pipeline load for all).</summary>
    void EnsureClassImages(CancellationToken cancellation)
    {
        // diffusers: fp16 on a GPU, fp32 on the CPU, unless --prior_generation_precision says otherwise ("no" included).
        var dtype = DeviceSelection.ParsePrecision(_o.PriorGenerationPrecision is "no" ? null : _o.PriorGenerationPrecision, _device);
        var plans = _o.AllConcepts.GroupBy(c => c.ClassFolderKey)
            .Select(g => (Plan: ClassImageGenerator.Inspect(g.First().ClassDataDirectory!, _o.NumClassImages), Prompt: g.First().ClassPrompt!)).ToList();
        foreach (var (plan, _) in plans)
            _events.Log?.Invoke($"Class images in '{plan.Directory}': found {plan.Existing}, generating {plan.Missing}"
                + (plan.Missing > 0 ? $" ({DeviceSelection.PrecisionName(dtype)} on {_device})." : "."));
        if (plans.All(p => p.Plan.Missing == 0)) return;
        using var pipeline = PipelineCache.Load(_source, dtype, _device);   // freed before training starts
        foreach (var (plan, prompt) in plans.Where(p => p.Plan.Missing > 0))
        {
            var sw = Stopwatch.StartNew();
            var options = new TextToImageOptions
            {
                Prompts = new[] { prompt }, Steps = _o.ClassImageSteps, BatchSize = _o.SampleBatchSize,
                Seed = _o.Seed, Width = _o.Resolution, Height = _o.Resolution,
            };
            int done = 0;
            ClassImageGenerator.Generate(pipeline, plan, options,
                new InlineProgress<DenoiseProgress>(p => Report("class-images", p.Image, plan.Missing, 0, null, null, 0, sw.Elapsed,
                    $"Class image {p.Image + 1}/{plan.Missing} ('{prompt}'), step {p.Step}/{p.StepCount}")),
                cancellation, _ => done++);
            _events.Log?.Invoke($"Generated {done} class image(s) of '{prompt}' in {sw.Elapsed.TotalSeconds:F1} s.");
        }
    }

    void SaveCheckpoint(TrainingState snapshot, double loss, double lr, bool prune = true, bool final = false)
    {
        if (prune && _o.CheckpointsTotalLimit is int limit)
            CheckpointStore.Prune(_o.OutputDirectory, limit - 1, _events.ConfirmDelete, _events.Log);
        snapshot.Loss = loss;
        snapshot.LearningRate = lr;
        var path = CheckpointStore.Save(_o.OutputDirectory, snapshot, dir =>
        {
            if (_o.LoRA)
            {
                // Adapters only (megabytes); ModelSource applies them onto base_model, so the checkpoint is inference-ready.
                LoRAWeights.Save(Path.Combine(dir, LoRAWeights.FileName), LoRANetworks(), LoRAFormat.Diffusers, _source.BaseModel);
                _optimizer.SaveState(Path.Combine(dir, CheckpointStore.OptimizerFile));
                return;
            }
            _unet.SavePretrained(Path.Combine(dir, "unet"));
            if (_o.TrainTextEncoder) _textEncoder.SavePretrained(Path.Combine(dir, "text_encoder"));
            _optimizer.SaveState(Path.Combine(dir, CheckpointStore.OptimizerFile));
        });
        var info = new CheckpointInfo(path, snapshot.GlobalStep, snapshot.Epoch, loss, lr, DateTime.Now);
        _checkpoints.Add(info);
        _events.CheckpointSaved?.Invoke(info);
        _events.Log?.Invoke($"Saved state to {path}");
    }

    void Validate(int step, CancellationToken cancellation)
    {
        _unet.eval();
        try
        {
            var pipeline = new StableDiffusionPipeline(_tokenizer, _textEncoder, _unet, _vae, _schedulerConfig, _device, UnetDType)
            { SourcePath = _o.OutputDirectory };
            var dir = Path.Combine(_o.OutputDirectory, "validation", $"step-{step}");
            Directory.CreateDirectory(dir);
            var baseOptions = new TextToImageOptions
            {
                Prompts = _o.ValidationPrompts, ImagesPerPrompt = _o.NumValidationImages, Steps = _o.ValidationInferenceSteps,
                Scheduler = _o.ValidationScheduler, Seed = _o.Seed, Width = _o.Resolution, Height = _o.Resolution, ClipSkip = _o.ClipSkip,
            };
            var samples = _o.ValidationPrompts.Select(SamplePrompt.Parse).ToList();
            // As diffusers: all prompts in one call. Prompts with kohya-ss' options: one call each, with its settings.
            var calls = samples.Any(p => p.HasOptions)
                ? samples.Select(p => baseOptions with
                {
                    Prompts = new[] { p.Prompt }, NegativePrompts = p.Negative is null ? null : new[] { p.Negative },
                    Width = p.Width ?? _o.Resolution, Height = p.Height ?? _o.Resolution, Steps = p.Steps ?? _o.ValidationInferenceSteps,
                    GuidanceScale = p.GuidanceScale ?? baseOptions.GuidanceScale, Seed = p.Seed ?? _o.Seed,
                }).ToList()
                : new List<TextToImageOptions> { baseOptions };
            int index = 0;
            foreach (var options in calls)
            {
                // The pipeline wraps the training modules: it must not dispose them, so it is not disposed.
                pipeline.Generate(options, null, cancellation, img =>
                {
                    int n = index++;
                    var path = Path.Combine(dir, $"{n:D3}-seed{img.Seed}.png");
                    PngWriter.Save(img.Pixels, path, GenerationMetadata.For(img, _o.OutputDirectory));
                    _events.ValidationImage?.Invoke(new ValidationImageInfo(path, step, img.Prompt, img.Seed));
                    _trackers?.LogImage($"validation/{n}", path, options.Width!.Value, options.Height!.Value, step);
                });
            }
        }
        finally
        {
            _unet.train();
        }
    }

    /// <summary>The full pipeline in diffusers layout: trained parts saved, the rest copied from the base model.</summary>
    void SavePipeline()
    {
        var output = Path.GetFullPath(_o.OutputDirectory);
        if (_o.LoRA) { SaveLoRAOutput(output); return; }
        var layout = DiffusersPipelineFolder.Open(_source.BaseModel);
        var staging = Path.Combine(output, ".pipeline-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(staging);
        try
        {
            ScalarType? saveAs = _o.SavePrecision switch { "fp16" => ScalarType.Float16, "bf16" => ScalarType.BFloat16, _ => null };
            _unet.SavePretrained(Path.Combine(staging, "unet"), saveAs);
            if (_o.TrainTextEncoder) _textEncoder.SavePretrained(Path.Combine(staging, "text_encoder"), saveAs);
            foreach (var component in new[] { "text_encoder", "vae", "tokenizer", "scheduler" })
            {
                if (component == "text_encoder" && _o.TrainTextEncoder) continue;
                string src = component == "text_encoder" && _source.TextEncoderDirectory is not null ? _source.TextEncoderDirectory : layout.ComponentDirectory(component);
                FolderStaging.CopyDirectory(src, Path.Combine(staging, component));
            }
            File.Copy(Path.Combine(layout.Root, "model_index.json"), Path.Combine(staging, "model_index.json"));
            FolderStaging.PublishInto(staging, output);
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, true);
        }
    }

    /// <summary>LoRA run output as train_dreambooth_lora.py writes it: OUTPUT/pytorch_lora_weights.safetensors (+ kohya copy).</summary>
    void SaveLoRAOutput(string output)
    {
        void Write(string name, LoRAFormat format)
        {
            var temp = Path.Combine(output, "." + name + ".tmp-" + Guid.NewGuid().ToString("N")[..8]);
            try
            {
                LoRAWeights.Save(temp, LoRANetworks(), format, _source.BaseModel);
                File.Move(temp, Path.Combine(output, name), overwrite: true);
            }
            finally { if (File.Exists(temp)) File.Delete(temp); }
        }
        Write(LoRAWeights.FileName, LoRAFormat.Diffusers);
        if (_o.SaveKohyaLoRA) Write(LoRAWeights.KohyaFileName, LoRAFormat.Kohya);
    }


    void Report(string phase, int step, int total, int epoch, double? loss, double? smoothed, double lr, TimeSpan elapsed, string? message = null, double rate = 0)
    {
        TimeSpan? remaining = rate > 0 && total > step ? TimeSpan.FromSeconds((total - step) / rate) : null;
        _events.Progress?.Invoke(new TrainingProgress(phase, step, total, epoch, loss, smoothed, lr, rate, elapsed, remaining, message));
    }

    public void Dispose()
    {
        _latentCache?.Dispose();
        if (_promptEmbeddings is not null) foreach (var t in _promptEmbeddings.Values) t.Dispose();
        _optimizer?.Dispose();
        _gradientOffload?.Dispose();
        _unetLora?.Dispose();
        _textEncoderLora?.Dispose();
        _unet?.Dispose();
        _textEncoder?.Dispose();
        _vae?.Dispose();
    }
}
