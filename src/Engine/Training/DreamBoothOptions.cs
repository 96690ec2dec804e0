using System.Text.Json.Serialization;

namespace DreamBooth.Engine.Training;

/// <summary>
/// Every setting of a DreamBooth run, named after diffusers' train_dreambooth.py flags (see docs/parameters.md).
/// Stored whole in each checkpoint so a resume continues with exactly the same settings.
/// </summary>
public sealed record DreamBoothOptions
{
    public required string Model { get; init; }
    public required string InstanceDataDirectory { get; init; }
    public required string InstancePrompt { get; init; }
    /// <summary>
    /// kohya-ss' --caption_extension: an instance image with a text file of this extension beside it (dog1.png,
    /// dog1.txt) is trained with that file's first line as its prompt; the others with <see cref="InstancePrompt"/>
    /// (<see cref="InstanceCaptions"/>). Null: one prompt for all, as diffusers.
    /// </summary>
    public string? CaptionExtension { get; init; }
    // kohya-ss' caption augmentation of the instance prompts (CaptionAugmentation): tags shuffled past the kept ones,
    // captions or single tags dropped at these rates.
    public bool ShuffleCaption { get; init; }
    public int KeepTokens { get; init; }
    public string? KeepTokensSeparator { get; init; }
    public double CaptionDropoutRate { get; init; }
    public double CaptionTagDropoutRate { get; init; }
    public int CaptionDropoutEveryNEpochs { get; init; }
    public string? ClassDataDirectory { get; init; }
    public string? ClassPrompt { get; init; }
    /// <summary>
    /// More subjects trained in the same run beside the first (<see cref="InstanceDataDirectory"/>, <see cref="InstancePrompt"/>,
    /// <see cref="ClassDataDirectory"/>, <see cref="ClassPrompt"/>): their images join the dataset with their own prompts,
    /// and with prior preservation each fills its own class folder with its own class prompt. Null or empty: one subject.
    /// </summary>
    public IReadOnlyList<DreamBoothConcept>? Concepts { get; init; }
    /// <summary>kohya-ss' repeats for the first concept: each of its instance images counts this many times an epoch.</summary>
    public int Repeats { get; init; } = 1;
    /// <summary>The run's subjects: the first from the options themselves, then <see cref="Concepts"/>.</summary>
    [JsonIgnore] public IReadOnlyList<DreamBoothConcept> AllConcepts =>
        new[] { new DreamBoothConcept { InstanceDataDirectory = InstanceDataDirectory, InstancePrompt = InstancePrompt, ClassDataDirectory = ClassDataDirectory, ClassPrompt = ClassPrompt, Repeats = Repeats } }
            .Concat(Concepts ?? Array.Empty<DreamBoothConcept>()).ToList();
    public bool WithPriorPreservation { get; init; }
    public double PriorLossWeight { get; init; } = 1.0;
    public int NumClassImages { get; init; } = 100;
    public int SampleBatchSize { get; init; } = 4;
    /// <summary>
    /// diffusers' --prior_generation_precision: fp32, fp16 or bf16 for generating class images; null (or auto / no):
    /// fp16 on a GPU, fp32 on the CPU, as diffusers.
    /// </summary>
    public string? PriorGenerationPrecision { get; init; }
    /// <summary>Steps for class-image generation (diffusers uses the pipeline default, 50).</summary>
    public int ClassImageSteps { get; init; } = 50;
    public int Resolution { get; init; } = 512;
    public bool CenterCrop { get; init; }
    /// <summary>
    /// kohya-ss' --enable_bucket: each image trains at the aspect-ratio bucket nearest its own (about Resolution² pixels,
    /// sides in steps of <see cref="BucketResolutionSteps"/> between the minimum and maximum side), resized to cover it
    /// and cropped, instead of cropped to a square (<see cref="AspectRatioBuckets"/>).
    /// </summary>
    public bool EnableBucket { get; init; }
    public int MinBucketResolution { get; init; } = 256;
    public int MaxBucketResolution { get; init; } = 1024;
    public int BucketResolutionSteps { get; init; } = 64;
    public bool RandomFlip { get; init; }
    public int TrainBatchSize { get; init; } = 1;
    public int GradientAccumulationSteps { get; init; } = 1;
    public double LearningRate { get; init; } = 5e-6;
    public bool ScaleLearningRate { get; init; }
    public string LearningRateScheduler { get; init; } = "constant";
    public int LearningRateWarmupSteps { get; init; }
    public int LearningRateNumCycles { get; init; } = 1;
    public double LearningRatePower { get; init; } = 1.0;
    public int? MaxTrainSteps { get; init; }
    public int NumTrainEpochs { get; init; } = 1;
    public bool TrainTextEncoder { get; init; }
    /// <summary>
    /// kohya-ss' text-encoder learning rate (train_db.py's --learning_rate_te): the text encoder's parameters, or its LoRA
    /// adapters, learn at this rate on the same schedule. Null: <see cref="LearningRate"/>, as diffusers.
    /// </summary>
    public double? TextEncoderLearningRate { get; init; }
    /// <summary>
    /// kohya-ss' --stop_text_encoder_training: the text encoder trains for this many optimizer steps and then stays as
    /// it is while the UNet trains on (less overfitting of the prompt). Null: to the end.
    /// </summary>
    public int? StopTextEncoderTraining { get; init; }
    public double AdamBeta1 { get; init; } = 0.9;
    public double AdamBeta2 { get; init; } = 0.999;
    public double AdamWeightDecay { get; init; } = 1e-2;
    public double AdamEpsilon { get; init; } = 1e-8;
    public double MaxGradNorm { get; init; } = 1.0;
    public long Seed { get; init; }
    public int CheckpointingSteps { get; init; } = 500;
    public int? CheckpointsTotalLimit { get; init; }
    /// <summary>kohya-ss' --save_every_n_epochs: also a checkpoint at the end of every Nth epoch (beside every CheckpointingSteps steps). Null: none.</summary>
    public int? CheckpointingEpochs { get; init; }
    public IReadOnlyList<string> ValidationPrompts { get; init; } = Array.Empty<string>();
    public int NumValidationImages { get; init; } = 4;
    public int ValidationSteps { get; init; } = 100;
    public string ValidationScheduler { get; init; } = "DPMSolverMultistepScheduler";
    public int ValidationInferenceSteps { get; init; } = 25;
    public bool OffsetNoise { get; init; }
    /// <summary>
    /// kohya-ss' --noise_offset: noise += this · N(0,1) per sample and channel (diffusers' --offset_noise is this at 0.1).
    /// Null: 0.1 with <see cref="OffsetNoise"/>, else none.
    /// </summary>
    public double? NoiseOffset { get; init; }
    [JsonIgnore] public double EffectiveNoiseOffset => NoiseOffset ?? (OffsetNoise ? 0.1 : 0);
    /// <summary>
    /// kohya-ss' --adaptive_noise_scale (with a noise offset): each sample's and channel's offset is the noise offset +
    /// this × |mean of its latents|, clamped at 0. Null: off.
    /// </summary>
    public double? AdaptiveNoiseScale { get; init; }
    /// <summary>
    /// Train on the text encoder's output this many layers before its last, final layer norm applied (diffusers'
    /// clip_skip, as Invoke-DreamBoothInference -ClipSkip: 1 = the penultimate layer, kohya-ss' --clip_skip 2). 0: the last.
    /// </summary>
    public int ClipSkip { get; init; }
    public double? SnrGamma { get; init; }
    /// <summary>
    /// diffusers' --input_perturbation (kohya-ss' --ip_noise_gamma): the UNet's input is noised with noise + this ·
    /// N(0,1) while it learns to predict the noise itself (recommended 0.1). 0: off.
    /// </summary>
    public double InputPerturbation { get; init; }
    /// <summary>kohya-ss' --debiased_estimation_loss: the instance loss weighted 1/√SNR per sample (<see cref="MinSnr.DebiasedWeights"/>).</summary>
    public bool DebiasedEstimationLoss { get; init; }
    /// <summary>kohya-ss' --multires_noise_iterations: levels of coarser noise added to the training noise (<see cref="MultiresNoise"/>); 0: off.</summary>
    public int MultiresNoiseIterations { get; init; }
    /// <summary>kohya-ss' --multires_noise_discount: each coarser level's weight is this to the power of its index.</summary>
    public double MultiresNoiseDiscount { get; init; } = 0.3;
    /// <summary>l2 (diffusers' MSE), huber or smooth_l1: the scheduled Huber losses of diffusers' research script and kohya-ss (<see cref="HuberLoss"/>).</summary>
    public string LossType { get; init; } = "l2";
    /// <summary>How the Huber parameter follows the timestep: snr (the default there), exponential or constant.</summary>
    public string HuberSchedule { get; init; } = "snr";
    public double HuberC { get; init; } = 0.1;
    public required string OutputDirectory { get; init; }
    /// <summary>
    /// diffusers' --report_to: where each step's loss and learning rate (and the validation images) are logged:
    /// all (TensorBoard event file and CSV), tensorboard, csv or none (<see cref="TrainingTrackers"/>).
    /// </summary>
    public string ReportTo { get; init; } = "all";
    /// <summary>diffusers' --logging_dir: the logs' folder, relative to <see cref="OutputDirectory"/> unless absolute.</summary>
    public string LoggingDirectory { get; init; } = "logs";
    public string Device { get; init; } = "auto";
    /// <summary>no, fp16 or bf16 (diffusers' --mixed_precision). Trainable weights stay fp32.</summary>
    public string MixedPrecision { get; init; } = "no";
    // Memory recipes: see MemoryProfiles (the guide's 16/12/8 GB presets), MixedPrecision, LatentCache.
    public bool GradientCheckpointing { get; init; }
    /// <summary>
    /// What <see cref="GradientCheckpointing"/> recomputes: auto (blocks on a GPU, selective on the CPU), blocks (whole
    /// resnets and transformer blocks, as diffusers) or selective (their norm + activation pairs and GEGLUs); see
    /// <see cref="Training.GradientCheckpointingMode"/>.
    /// </summary>
    public string GradientCheckpointingMode { get; init; } = Training.GradientCheckpointingMode.Auto;
    /// <summary>How checkpoints written before <see cref="GradientCheckpointingMode"/> said selective checkpointing.</summary>
    [JsonInclude, JsonPropertyName("SelectiveCheckpointing"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    [System.ComponentModel.EditorBrowsable(System.ComponentModel.EditorBrowsableState.Never)]
    public bool LegacySelectiveCheckpointing
    {
        get => false;
        init { if (value) { GradientCheckpointing = true; GradientCheckpointingMode = Training.GradientCheckpointingMode.Selective; } }
    }
    public bool Use8BitAdam { get; init; }
    public bool SetGradsToNone { get; init; }
    /// <summary>AdamW state and update on the CPU; on a GPU the gradients move there during backward too (<see cref="GradientOffload"/>).</summary>
    public bool OffloadOptimizerState { get; init; }
    public bool CacheLatents { get; init; }
    /// <summary>diffusers' --allow_tf32: fp32 matrix products in TF32 on CUDA (Ampere and later) during the run (<see cref="Tf32"/>).</summary>
    public bool AllowTf32 { get; init; }
    /// <summary>
    /// accelerate's set_seed(deterministic=True): libtorch's deterministic algorithms during the run, so that a seeded
    /// run on a GPU repeats bit for bit (<see cref="DeterministicAlgorithms"/>). The CPU is deterministic without it.
    /// </summary>
    public bool Deterministic { get; init; }
    // LoRA (issue 8): frozen UNet/text encoder with trainable adapters (diffusers' train_dreambooth_lora.py).
    /// <summary>Train LoRA adapters on the attention projections instead of the full weights.</summary>
    public bool LoRA { get; init; }
    /// <summary>LoRA rank r (diffusers' --rank, default 4).</summary>
    public int LoRARank { get; init; } = 4;
    /// <summary>lora_alpha; the adapter is scaled by alpha / rank. Null = rank (scale 1, as diffusers' script).</summary>
    public double? LoRAAlpha { get; init; }
    /// <summary>Also write the adapters in the kohya / A1111 key layout (pytorch_lora_weights_kohya.safetensors).</summary>
    public bool SaveKohyaLoRA { get; init; }
    /// <summary>
    /// kohya-ss' --save_precision: the precision the final model's trained components (UNet, text encoder) are written
    /// in: fp32 (default), fp16 or bf16, half the size. Checkpoints stay fp32 so that a resume continues exactly.
    /// </summary>
    public string SavePrecision { get; init; } = "fp32";
    [JsonIgnore] public double EffectiveLoRAAlpha => LoRAAlpha ?? LoRARank;

    /// <summary>Checks ranges and combinations before any work starts; messages say what to change.</summary>
    public void Validate()
    {
        static void Range(bool ok, string name, object value, string rule) { if (!ok) throw new ArgumentOutOfRangeException(name, value, $"-{name} {rule} (got {value})."); }
        if (string.IsNullOrWhiteSpace(InstancePrompt)) throw new ArgumentException("-InstancePrompt is required, e.g. 'a photo of sks dog'.");
        Range(Resolution > 0 && Resolution % 8 == 0, nameof(Resolution), Resolution, "must be a positive multiple of 8");
        Range(TrainBatchSize >= 1, nameof(TrainBatchSize), TrainBatchSize, "must be at least 1");
        Range(GradientAccumulationSteps >= 1, nameof(GradientAccumulationSteps), GradientAccumulationSteps, "must be at least 1");
        Range(LearningRate > 0 && double.IsFinite(LearningRate), nameof(LearningRate), LearningRate, "must be a positive number");
        Range(MaxTrainSteps is null or >= 1, nameof(MaxTrainSteps), MaxTrainSteps!, "must be at least 1");
        Range(NumTrainEpochs >= 1, nameof(NumTrainEpochs), NumTrainEpochs, "must be at least 1");
        Range(CheckpointingSteps >= 1, nameof(CheckpointingSteps), CheckpointingSteps, "must be at least 1");
        Range(CheckpointsTotalLimit is null or >= 1, nameof(CheckpointsTotalLimit), CheckpointsTotalLimit!, "must be at least 1");
        Range(PriorLossWeight >= 0, nameof(PriorLossWeight), PriorLossWeight, "cannot be negative");
        Range(NumClassImages >= 1, nameof(NumClassImages), NumClassImages, "must be at least 1");
        Range(SampleBatchSize >= 1, nameof(SampleBatchSize), SampleBatchSize, "must be at least 1");
        if (PriorGenerationPrecision is not (null or "auto" or "no") && !DeviceSelection.PrecisionNames.Contains(PriorGenerationPrecision))
            throw new ArgumentException($"-PriorGenerationPrecision must be fp32, fp16 or bf16 (got '{PriorGenerationPrecision}').");
        Range(MaxGradNorm > 0, nameof(MaxGradNorm), MaxGradNorm, "must be positive");
        Range(AdamBeta1 is >= 0 and < 1, nameof(AdamBeta1), AdamBeta1, "must be in [0, 1)");
        Range(AdamBeta2 is >= 0 and < 1, nameof(AdamBeta2), AdamBeta2, "must be in [0, 1)");
        Range(AdamEpsilon > 0, nameof(AdamEpsilon), AdamEpsilon, "must be positive");
        Range(AdamWeightDecay >= 0, nameof(AdamWeightDecay), AdamWeightDecay, "cannot be negative");
        Range(LearningRateWarmupSteps >= 0, nameof(LearningRateWarmupSteps), LearningRateWarmupSteps, "cannot be negative");
        Range(ValidationSteps >= 1, nameof(ValidationSteps), ValidationSteps, "must be at least 1");
        Range(NumValidationImages >= 1, nameof(NumValidationImages), NumValidationImages, "must be at least 1");
        Range(SnrGamma is null or > 0, nameof(SnrGamma), SnrGamma!, "must be positive");
        if (EnableBucket)
        {
            Range(BucketResolutionSteps > 0 && BucketResolutionSteps % 8 == 0, nameof(BucketResolutionSteps), BucketResolutionSteps, "must be a positive multiple of 8 (the VAE's downsampling)");
            Range(MinBucketResolution > 0 && MinBucketResolution % BucketResolutionSteps == 0, nameof(MinBucketResolution), MinBucketResolution, $"must be a positive multiple of -BucketResolutionSteps ({BucketResolutionSteps})");
            Range(MaxBucketResolution >= Math.Max(MinBucketResolution, Resolution) && MaxBucketResolution % BucketResolutionSteps == 0, nameof(MaxBucketResolution), MaxBucketResolution,
                $"must be a multiple of -BucketResolutionSteps ({BucketResolutionSteps}) and at least -MinBucketResolution and -Resolution");
        }
        Range(MultiresNoiseIterations >= 0, nameof(MultiresNoiseIterations), MultiresNoiseIterations, "cannot be negative");
        Range(MultiresNoiseDiscount > 0 && MultiresNoiseDiscount <= 1, nameof(MultiresNoiseDiscount), MultiresNoiseDiscount, "must be in (0, 1]");
        Range(InputPerturbation >= 0 && double.IsFinite(InputPerturbation), nameof(InputPerturbation), InputPerturbation, "cannot be negative");
        if (SavePrecision is not ("fp32" or "fp16" or "bf16")) throw new ArgumentException($"-SavePrecision must be fp32, fp16 or bf16 (got '{SavePrecision}').");
        if (!HuberLoss.LossTypes.Contains(LossType)) throw new ArgumentException($"-LossType must be l2, huber or smooth_l1 (got '{LossType}').");
        if (!HuberLoss.Schedules.Contains(HuberSchedule)) throw new ArgumentException($"-HuberSchedule must be snr, exponential or constant (got '{HuberSchedule}').");
        Range(HuberC > 0 && HuberC <= 1, nameof(HuberC), HuberC, "must be in (0, 1]");
        if (AdaptiveNoiseScale is double ans && (!double.IsFinite(ans) || EffectiveNoiseOffset <= 0))
            throw new ArgumentException("-AdaptiveNoiseScale scales the offset noise by the latents' mean: it needs -NoiseOffset (or -OffsetNoise), and a finite value.");
        Range(CheckpointingEpochs is null or >= 1, nameof(CheckpointingEpochs), CheckpointingEpochs!, "must be at least 1");
        Range(KeepTokens >= 0, nameof(KeepTokens), KeepTokens, "cannot be negative");
        Range(CaptionDropoutRate is >= 0 and <= 1, nameof(CaptionDropoutRate), CaptionDropoutRate, "must be between 0 and 1");
        Range(CaptionTagDropoutRate is >= 0 and <= 1, nameof(CaptionTagDropoutRate), CaptionTagDropoutRate, "must be between 0 and 1");
        Range(CaptionDropoutEveryNEpochs >= 0, nameof(CaptionDropoutEveryNEpochs), CaptionDropoutEveryNEpochs, "cannot be negative");
        if ((KeepTokens > 0 || !string.IsNullOrEmpty(KeepTokensSeparator)) && !ShuffleCaption && CaptionTagDropoutRate == 0)
            throw new ArgumentException($"{(KeepTokens > 0 ? "-KeepTokens" : "-KeepTokensSeparator")} says which tags -ShuffleCaption and -CaptionTagDropoutRate leave alone; add one of them.");
        Range(NoiseOffset is not double no || (no >= 0 && double.IsFinite(no)), nameof(NoiseOffset), NoiseOffset!, "cannot be negative");
        Range(ClipSkip >= 0, nameof(ClipSkip), ClipSkip, "cannot be negative");
        Range(TextEncoderLearningRate is not double te || (te > 0 && double.IsFinite(te)), nameof(TextEncoderLearningRate), TextEncoderLearningRate!, "must be a positive number");
        Range(StopTextEncoderTraining is null or >= 1, nameof(StopTextEncoderTraining), StopTextEncoderTraining!, "must be at least 1 (without -TrainTextEncoder the text encoder does not train at all)");
        if ((TextEncoderLearningRate is not null || StopTextEncoderTraining is not null) && !TrainTextEncoder)
            throw new ArgumentException($"{(TextEncoderLearningRate is not null ? "-TextEncoderLearningRate" : "-StopTextEncoderTraining")} needs -TrainTextEncoder (the text encoder is frozen without it).");
        Range(LoRARank >= 1, nameof(LoRARank), LoRARank, "must be at least 1");
        Range(LoRAAlpha is null or > 0, nameof(LoRAAlpha), LoRAAlpha!, "must be positive");
        if (CaptionExtension is not null && (CaptionExtension.Trim('.').Length == 0 || CaptionExtension.IndexOfAny(new[] { '/', '\\', '*', '?' }) >= 0))
            throw new ArgumentException($"-CaptionExtension must be a file extension such as .txt or .caption (got '{CaptionExtension}').");
        if (!TrainingTrackers.Names.Contains(ReportTo))
            throw new ArgumentException($"-ReportTo must be {string.Join(", ", TrainingTrackers.Names)} (got '{ReportTo}')." +
                (ReportTo is "wandb" or "comet_ml" ? " wandb and comet_ml need their online services; use tensorboard (tensorboard --logdir OUTPUT/logs) or csv." : ""));
        if (string.IsNullOrWhiteSpace(LoggingDirectory)) throw new ArgumentException("-LoggingDirectory cannot be empty (default: logs, under -OutputDirectory).");
        foreach (var prompt in ValidationPrompts) SamplePrompt.Parse(prompt);   // kohya-ss' options: checked before any work
        if (SaveKohyaLoRA && !LoRA) throw new ArgumentException("-SaveKohyaLoRA needs -LoRA (a full fine-tune has no adapters to write).");
        if (WithPriorPreservation)
        {
            if (string.IsNullOrWhiteSpace(ClassDataDirectory)) throw new ArgumentException("-WithPriorPreservation needs -ClassDataDirectory (a folder for class images; missing ones are generated).");
            if (string.IsNullOrWhiteSpace(ClassPrompt)) throw new ArgumentException("-WithPriorPreservation needs -ClassPrompt, e.g. 'a photo of dog'.");
        }
        var concepts = AllConcepts;
        for (int i = 0; i < concepts.Count; i++)
            if (concepts[i].Repeats < 1)
                throw new ArgumentOutOfRangeException(nameof(Repeats), concepts[i].Repeats, $"Repeats must be at least 1 (concept {i + 1} has {concepts[i].Repeats}).");
        for (int i = 1; i < concepts.Count; i++)
        {
            var c = concepts[i];
            string which = $"Concept {i + 1}";
            if (string.IsNullOrWhiteSpace(c.InstanceDataDirectory)) throw new ArgumentException($"{which} needs an InstanceDataDirectory (a folder of photos of that subject).");
            if (string.IsNullOrWhiteSpace(c.InstancePrompt)) throw new ArgumentException($"{which} needs an InstancePrompt, e.g. 'a photo of zwx cat'.");
            if (WithPriorPreservation && (string.IsNullOrWhiteSpace(c.ClassDataDirectory) || string.IsNullOrWhiteSpace(c.ClassPrompt)))
                throw new ArgumentException($"{which} needs a ClassDataDirectory and a ClassPrompt with -WithPriorPreservation (e.g. 'a photo of cat').");
        }
        // One class folder holds one class: two concepts filling it with different prompts would mix their priors.
        foreach (var shared in concepts.Where(c => c.ClassDataDirectory is not null).GroupBy(c => c.ClassFolderKey))
            if (WithPriorPreservation && shared.Select(c => c.ClassPrompt).Distinct().Count() > 1)
                throw new ArgumentException($"Concepts share the class folder '{shared.First().ClassDataDirectory}' with different class prompts ({string.Join(", ", shared.Select(c => $"'{c.ClassPrompt}'").Distinct())}): give each class prompt its own folder.");
        Training.GradientCheckpointingMode.Parse(GradientCheckpointingMode);
        if (MixedPrecision is not ("no" or "fp16" or "bf16")) throw new ArgumentException($"-MixedPrecision must be no, fp16 or bf16 (got '{MixedPrecision}').");
        if (CacheLatents && (!CenterCrop || RandomFlip))
            throw new ArgumentException("-CacheLatents encodes each image once, so it needs -CenterCrop and no -RandomFlip (random crops and flips would be frozen).");
    }

    [JsonIgnore] public bool HasValidation => ValidationPrompts.Count > 0;
}
