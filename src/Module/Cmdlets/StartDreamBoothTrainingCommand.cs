using System.Collections;
using System.Management.Automation;
using System.Reflection;
using System.Text.Json;
using DreamBooth.Engine.Training;

namespace DreamBooth.Cmdlets;

/// <summary>
/// <para type="synopsis">Fine-tunes a Stable Diffusion model on a few photos of a subject (DreamBooth), with prior preservation, checkpoints and validation.</para>
/// </summary>
[Cmdlet(VerbsLifecycle.Start, "DreamBoothTraining", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(DreamBoothCheckpoint), typeof(DreamBoothImage), typeof(DreamBoothModel))]
public sealed class StartDreamBoothTrainingCommand : TrainingCmdletBase
{
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("PretrainedModelNameOrPath", "FullName")]
    public string? Model { get; set; }

    [Parameter] [Alias("InstanceDataDir")] public string? InstanceDataDirectory { get; set; }
    [Parameter] public string? InstancePrompt { get; set; }
    /// <summary>kohya-ss' --caption_extension: an instance image's prompt from the text file of this extension beside it.</summary>
    [Parameter] public string? CaptionExtension { get; set; }
    /// <summary>kohya-ss' --shuffle_caption: an instance caption's comma-separated tags in a new order each time, after the first -KeepTokens.</summary>
    [Parameter] public SwitchParameter ShuffleCaption { get; set; }
    /// <summary>kohya-ss' --keep_tokens: tags at the front of a caption that -ShuffleCaption and -CaptionTagDropoutRate leave alone.</summary>
    [Parameter, ValidateRange(0, 1000)] public int KeepTokens { get; set; }
    /// <summary>kohya-ss' --keep_tokens_separator: the fixed part of a caption ends at this text (e.g. '|||') instead of after -KeepTokens tags.</summary>
    [Parameter] public string? KeepTokensSeparator { get; set; }
    /// <summary>kohya-ss' --caption_dropout_rate: the share of instance images trained with an empty caption.</summary>
    [Parameter, ValidateRange(0.0, 1.0)] public double CaptionDropoutRate { get; set; }
    /// <summary>kohya-ss' --caption_tag_dropout_rate: the share of a caption's tags (after the kept ones) dropped each time.</summary>
    [Parameter, ValidateRange(0.0, 1.0)] public double CaptionTagDropoutRate { get; set; }
    /// <summary>kohya-ss' --caption_dropout_every_n_epochs: every Nth epoch trains with empty instance captions.</summary>
    [Parameter, ValidateRange(0, 100000)] public int CaptionDropoutEveryNEpochs { get; set; }
    [Parameter] [Alias("ClassDataDir")] public string? ClassDataDirectory { get; set; }
    [Parameter] public string? ClassPrompt { get; set; }
    /// <summary>
    /// More subjects in one run (the concepts list of the DreamBooth fork of diffusers' script): hashtables or objects
    /// with InstanceDataDirectory, InstancePrompt, ClassDataDirectory, ClassPrompt (or instance_data_dir, ...), or the
    /// path of a concepts_list JSON file. Without -InstanceDataDirectory the first is the run's main subject.
    /// </summary>
    [Parameter] [Alias("ConceptsList")] public object[]? Concept { get; set; }
    /// <summary>kohya-ss' repeats (num_repeats) of the first subject: each of its photos counts this many times an epoch (a -Concept takes a Repeats key).</summary>
    [Parameter, ValidateRange(1, 10000)] public int Repeats { get; set; } = 1;
    [Parameter] public SwitchParameter WithPriorPreservation { get; set; }
    [Parameter, ValidateRange(0.0, 1000.0)] public double PriorLossWeight { get; set; } = 1.0;
    [Parameter, ValidateRange(1, 100000)] public int NumClassImages { get; set; } = 100;
    [Parameter, ValidateRange(1, 64)] public int SampleBatchSize { get; set; } = 4;
    /// <summary>diffusers' --prior_generation_precision: the precision class images are generated in (auto: fp16 on a GPU, fp32 on the CPU).</summary>
    [Parameter, ValidateSet("auto", "no", "fp32", "fp16", "bf16")] public string? PriorGenerationPrecision { get; set; }
    [Parameter] public int Resolution { get; set; } = 512;
    [Parameter] public SwitchParameter CenterCrop { get; set; }
    /// <summary>kohya-ss' --enable_bucket: each image trains at the aspect-ratio bucket nearest its own instead of a square crop.</summary>
    [Parameter] public SwitchParameter EnableBucket { get; set; }
    [Parameter] [Alias("MinBucketReso")] public int MinBucketResolution { get; set; } = 256;
    [Parameter] [Alias("MaxBucketReso")] public int MaxBucketResolution { get; set; } = 1024;
    [Parameter] [Alias("BucketResoSteps")] public int BucketResolutionSteps { get; set; } = 64;
    [Parameter] public SwitchParameter RandomFlip { get; set; }
    [Parameter, ValidateRange(1, 1024)] public int TrainBatchSize { get; set; } = 1;
    [Parameter, ValidateRange(1, 1024)] public int GradientAccumulationSteps { get; set; } = 1;
    [Parameter] public double LearningRate { get; set; } = 5e-6;
    [Parameter] [Alias("ScaleLr")] public SwitchParameter ScaleLearningRate { get; set; }
    [Parameter]
    [Alias("LrScheduler")]
    [ValidateSet("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")]
    public string LearningRateScheduler { get; set; } = "constant";
    [Parameter, ValidateRange(0, int.MaxValue)] [Alias("LrWarmupSteps")] public int LearningRateWarmupSteps { get; set; }
    [Parameter, ValidateRange(1, 1000)] [Alias("LrNumCycles")] public int LearningRateNumCycles { get; set; } = 1;
    [Parameter] [Alias("LrPower")] public double LearningRatePower { get; set; } = 1.0;
    [Parameter, ValidateRange(1, int.MaxValue)] public int? MaxTrainSteps { get; set; }
    [Parameter, ValidateRange(1, 100000)] public int NumTrainEpochs { get; set; } = 1;
    [Parameter] public SwitchParameter TrainTextEncoder { get; set; }
    /// <summary>kohya-ss' --learning_rate_te: the text encoder's learning rate (default: -LearningRate), on the same schedule.</summary>
    [Parameter] [Alias("LearningRateTe", "TextEncoderLr")] public double? TextEncoderLearningRate { get; set; }
    /// <summary>kohya-ss' --stop_text_encoder_training: the text encoder trains for this many steps, then only the UNet.</summary>
    [Parameter, ValidateRange(1, int.MaxValue)] public int? StopTextEncoderTraining { get; set; }
    [Parameter] public double AdamBeta1 { get; set; } = 0.9;
    [Parameter] public double AdamBeta2 { get; set; } = 0.999;
    [Parameter] public double AdamWeightDecay { get; set; } = 1e-2;
    [Parameter] public double AdamEpsilon { get; set; } = 1e-8;
    [Parameter] public double MaxGradNorm { get; set; } = 1.0;
    [Parameter] public long? Seed { get; set; }
    [Parameter, ValidateRange(1, int.MaxValue)] public int CheckpointingSteps { get; set; } = 500;
    [Parameter, ValidateRange(1, int.MaxValue)] public int? CheckpointsTotalLimit { get; set; }
    /// <summary>kohya-ss' --save_every_n_epochs: also a checkpoint at the end of every Nth epoch.</summary>
    [Parameter, ValidateRange(1, int.MaxValue)] [Alias("SaveEveryNEpochs")] public int? CheckpointingEpochs { get; set; }
    [Parameter] public string[]? ValidationPrompt { get; set; }
    [Parameter, ValidateRange(1, 1000)] public int NumValidationImages { get; set; } = 4;
    [Parameter, ValidateRange(1, int.MaxValue)] public int ValidationSteps { get; set; } = 100;
    [Parameter, ArgumentCompleter(typeof(SchedulerNameCompleter))] public string ValidationScheduler { get; set; } = "DPMSolverMultistepScheduler";
    [Parameter] public SwitchParameter OffsetNoise { get; set; }
    /// <summary>kohya-ss' --noise_offset: the offset noise's amount (-OffsetNoise is 0.1).</summary>
    [Parameter, ValidateRange(0.0, 1.0)] public double? NoiseOffset { get; set; }
    /// <summary>kohya-ss' --adaptive_noise_scale: the offset noise grows by this × |the latents' mean| (needs -NoiseOffset).</summary>
    [Parameter, ValidateRange(-1.0, 1.0)] public double? AdaptiveNoiseScale { get; set; }
    /// <summary>Condition on the text encoder's output this many layers before the last (as Invoke-DreamBoothInference -ClipSkip).</summary>
    [Parameter, ValidateRange(0, 1000)] public int ClipSkip { get; set; }
    [Parameter] public double? SnrGamma { get; set; }
    /// <summary>diffusers' --input_perturbation (kohya-ss' --ip_noise_gamma): extra noise on the UNet's input only (0.1 recommended there).</summary>
    [Parameter, ValidateRange(0.0, 1.0)] public double InputPerturbation { get; set; }
    /// <summary>kohya-ss' --debiased_estimation_loss: the instance loss weighted 1/√SNR per sample.</summary>
    [Parameter] public SwitchParameter DebiasedEstimationLoss { get; set; }
    /// <summary>kohya-ss' --multires_noise_iterations: levels of coarser noise added to the training noise (6–10 there); 0: off.</summary>
    [Parameter, ValidateRange(0, 64)] public int MultiresNoiseIterations { get; set; }
    /// <summary>kohya-ss' --multires_noise_discount: the weight of each coarser level, to the power of its index.</summary>
    [Parameter, ValidateRange(1e-6, 1.0)] public double MultiresNoiseDiscount { get; set; } = 0.3;
    /// <summary>l2 (diffusers' MSE), huber or smooth_l1: the scheduled Huber losses (kohya-ss' and diffusers' research script's --loss_type).</summary>
    [Parameter, ValidateSet("l2", "huber", "smooth_l1")] public string LossType { get; set; } = "l2";
    /// <summary>How the Huber parameter follows the timestep (--huber_schedule).</summary>
    [Parameter, ValidateSet("snr", "exponential", "constant")] public string HuberSchedule { get; set; } = "snr";
    /// <summary>The Huber parameter c (--huber_c), in (0, 1].</summary>
    [Parameter, ValidateRange(1e-6, 1.0)] public double HuberC { get; set; } = 0.1;
    [Parameter] [Alias("OutputDir")] public string? OutputDirectory { get; set; }
    /// <summary>diffusers' --report_to: each step's loss and learning rate (and validation images) as a TensorBoard event file and a CSV file.</summary>
    [Parameter, ValidateSet("all", "tensorboard", "csv", "none")] public string ReportTo { get; set; } = "all";
    /// <summary>diffusers' --logging_dir: the logs' folder, relative to -OutputDirectory unless absolute.</summary>
    [Parameter] [Alias("LoggingDir")] [ValidateNotNullOrEmpty] public string LoggingDirectory { get; set; } = "logs";
    [Parameter, ArgumentCompleter(typeof(DeviceNameCompleter))] public string Device { get; set; } = "auto";
    [Parameter, ValidateSet("no", "fp16", "bf16")] public string MixedPrecision { get; set; } = "no";
    [Parameter] public SwitchParameter GradientCheckpointing { get; set; }
    /// <summary>What -GradientCheckpointing recomputes: Auto (Blocks on a GPU, Selective on the CPU), Blocks or Selective.</summary>
    [Parameter, ValidateSet("Auto", "Blocks", "Selective")] public string? GradientCheckpointingMode { get; set; }
    /// <summary>Short for -GradientCheckpointing -GradientCheckpointingMode Selective.</summary>
    [Parameter] public SwitchParameter SelectiveCheckpointing { get; set; }
    [Parameter] public SwitchParameter Use8BitAdam { get; set; }
    [Parameter] public SwitchParameter SetGradsToNone { get; set; }
    [Parameter] public SwitchParameter OffloadOptimizerState { get; set; }
    [Parameter] public SwitchParameter CacheLatents { get; set; }
    [Parameter] public SwitchParameter AllowTf32 { get; set; }
    /// <summary>libtorch's deterministic algorithms for the run: a seeded run on a GPU repeats bit for bit (accelerate's set_seed(deterministic=True)).</summary>
    [Parameter] public SwitchParameter Deterministic { get; set; }
    /// <summary>Accepted so the guide's commands translate; attention always uses scaled_dot_product_attention.</summary>
    [Parameter] [Alias("EnableXformersMemoryEfficientAttention")] public SwitchParameter MemoryEfficientAttention { get; set; }

    // LoRA (issue 8): train adapters on a frozen model (diffusers' train_dreambooth_lora.py).
    /// <summary>Train LoRA adapters on the attention projections instead of the whole UNet (and text encoder with -TrainTextEncoder).</summary>
    [Parameter] public SwitchParameter LoRA { get; set; }
    /// <summary>LoRA rank (diffusers' --rank).</summary>
    [Parameter, ValidateRange(1, 1024)] [Alias("LoRARank")] public int Rank { get; set; } = 4;
    /// <summary>LoRA alpha: adapters are scaled by Alpha / Rank. Default: Rank.</summary>
    [Parameter] [Alias("LoRAAlpha")] public double? Alpha { get; set; }
    /// <summary>Also write the adapters in the kohya / A1111 layout (pytorch_lora_weights_kohya.safetensors).</summary>
    [Parameter] public SwitchParameter SaveKohyaLoRA { get; set; }
    /// <summary>kohya-ss' --save_precision: the final model's trained components in fp32 (default), fp16 or bf16; checkpoints stay fp32.</summary>
    [Parameter, ValidateSet("fp32", "fp16", "bf16")] public string SavePrecision { get; set; } = "fp32";

    /// <summary>
    /// The diffusers guide's memory recipe for a GPU of this size (16GB, 12GB, 8GB): turns on its flags and says which;
    /// -MixedPrecision and -SampleBatchSize given on the command line win.
    /// </summary>
    [Parameter, ValidateSet("16GB", "12GB", "8GB", "Auto")] public string? MemoryProfile { get; set; }

    /// <summary>Never download a Hub model: use the Hugging Face cache only (as HF_HUB_OFFLINE=1).</summary>
    [Parameter] public SwitchParameter Offline { get; set; }

    /// <summary>A JSON or .psd1 file of settings named like these parameters or like diffusers' flags; parameters given on the command line win.</summary>
    [Parameter] public string? ConfigFile { get; set; }

    protected override void EndProcessing()
    {
        if (ConfigFile is not null) ApplyConfigFile(ResolvePath(ConfigFile));
        var concepts = Concept is null ? new List<DreamBoothConcept>() : ReadConcepts(Concept);
        if (string.IsNullOrWhiteSpace(InstanceDataDirectory) && concepts.Count > 0)
        {
            var first = concepts[0];
            concepts.RemoveAt(0);
            InstanceDataDirectory = first.InstanceDataDirectory;
            InstancePrompt ??= first.InstancePrompt;
            if (!MyInvocation.BoundParameters.ContainsKey(nameof(Repeats))) Repeats = first.Repeats;
            ClassDataDirectory ??= first.ClassDataDirectory;
            ClassPrompt ??= first.ClassPrompt;
        }
        if (string.IsNullOrWhiteSpace(Model)) ThrowInputError("-Model is required: a diffusers model folder such as one saved by diffusers' save_pretrained.", ErrorCategory.InvalidArgument, null, "MissingModel");
        if (string.IsNullOrWhiteSpace(InstanceDataDirectory)) ThrowInputError("-InstanceDataDirectory is required: a folder with 3–5 photos of the subject (or -Concept with one per subject).", ErrorCategory.InvalidArgument, null, "MissingInstanceData");
        if (string.IsNullOrWhiteSpace(InstancePrompt)) ThrowInputError("-InstancePrompt is required, e.g. 'a photo of sks dog'.", ErrorCategory.InvalidArgument, null, "MissingInstancePrompt");
        if (string.IsNullOrWhiteSpace(OutputDirectory)) ThrowInputError("-OutputDirectory is required: where checkpoints and the trained model go.", ErrorCategory.InvalidArgument, null, "MissingOutputDirectory");
        string? checkpointingMode = CheckpointingMode(GradientCheckpointingMode, SelectiveCheckpointing, GradientCheckpointing);

        var options = new DreamBoothOptions
        {
            Model = ResolveModel(Model!, Offline).Path, InstanceDataDirectory = ResolvePath(InstanceDataDirectory!), InstancePrompt = InstancePrompt!, CaptionExtension = CaptionExtension,
            ShuffleCaption = ShuffleCaption, KeepTokens = KeepTokens, KeepTokensSeparator = KeepTokensSeparator, CaptionDropoutRate = CaptionDropoutRate,
            CaptionTagDropoutRate = CaptionTagDropoutRate, CaptionDropoutEveryNEpochs = CaptionDropoutEveryNEpochs,
            ClassDataDirectory = ClassDataDirectory is null ? null : ResolvePath(ClassDataDirectory), ClassPrompt = ClassPrompt,
            Concepts = concepts.Count > 0 ? concepts : null, Repeats = Repeats,
            WithPriorPreservation = WithPriorPreservation, PriorLossWeight = PriorLossWeight, NumClassImages = NumClassImages,
            SampleBatchSize = SampleBatchSize, PriorGenerationPrecision = PriorGenerationPrecision, Resolution = Resolution, CenterCrop = CenterCrop, RandomFlip = RandomFlip,
            EnableBucket = EnableBucket, MinBucketResolution = MinBucketResolution, MaxBucketResolution = MaxBucketResolution, BucketResolutionSteps = BucketResolutionSteps,
            TrainBatchSize = TrainBatchSize, GradientAccumulationSteps = GradientAccumulationSteps, LearningRate = LearningRate,
            ScaleLearningRate = ScaleLearningRate, LearningRateScheduler = LearningRateScheduler,
            LearningRateWarmupSteps = LearningRateWarmupSteps, LearningRateNumCycles = LearningRateNumCycles,
            LearningRatePower = LearningRatePower, MaxTrainSteps = MaxTrainSteps, NumTrainEpochs = NumTrainEpochs,
            TrainTextEncoder = TrainTextEncoder, TextEncoderLearningRate = TextEncoderLearningRate, StopTextEncoderTraining = StopTextEncoderTraining,
            AdamBeta1 = AdamBeta1, AdamBeta2 = AdamBeta2, AdamWeightDecay = AdamWeightDecay,
            AdamEpsilon = AdamEpsilon, MaxGradNorm = MaxGradNorm, Seed = Seed ?? Random.Shared.NextInt64(0, uint.MaxValue),
            CheckpointingSteps = CheckpointingSteps, CheckpointsTotalLimit = CheckpointsTotalLimit, CheckpointingEpochs = CheckpointingEpochs,
            ValidationPrompts = ValidationPrompt ?? Array.Empty<string>(), NumValidationImages = NumValidationImages,
            ValidationSteps = ValidationSteps, ValidationScheduler = ValidationScheduler, OffsetNoise = OffsetNoise, NoiseOffset = NoiseOffset, AdaptiveNoiseScale = AdaptiveNoiseScale, ClipSkip = ClipSkip, SnrGamma = SnrGamma,
            LossType = LossType, HuberSchedule = HuberSchedule, HuberC = HuberC, InputPerturbation = InputPerturbation, DebiasedEstimationLoss = DebiasedEstimationLoss,
            MultiresNoiseIterations = MultiresNoiseIterations, MultiresNoiseDiscount = MultiresNoiseDiscount,
            OutputDirectory = ResolvePath(OutputDirectory!), ReportTo = ReportTo,
            LoggingDirectory = System.IO.Path.IsPathRooted(LoggingDirectory) || LoggingDirectory.StartsWith('~') ? ResolvePath(LoggingDirectory) : LoggingDirectory,
            Device = Device, MixedPrecision = MixedPrecision,
            GradientCheckpointing = GradientCheckpointing || SelectiveCheckpointing,
            GradientCheckpointingMode = checkpointingMode ?? "auto", Use8BitAdam = Use8BitAdam, SetGradsToNone = SetGradsToNone,
            OffloadOptimizerState = OffloadOptimizerState, CacheLatents = CacheLatents, AllowTf32 = AllowTf32, Deterministic = Deterministic,
            LoRA = LoRA, LoRARank = Rank, LoRAAlpha = Alpha, SaveKohyaLoRA = SaveKohyaLoRA, SavePrecision = SavePrecision,
        };
        if (MemoryProfile is not null && ResolveMemoryProfile(MemoryProfile, options.Device) is string profile) options = ApplyMemoryProfile(options, profile);
        try { DreamBoothTrainer.Preflight(options); }
        catch (Exception e) { ThrowEngineError(e, options, "InvalidTrainingInput"); }
        if (!ShouldProcess(options.OutputDirectory, $"Train DreamBooth on '{options.InstanceDataDirectory}' from '{options.Model}'")) return;
        RunTraining((events, token) => DreamBoothTrainer.Train(options, events, token));
    }

    /// <summary>-MemoryProfile Auto: the recipe for the training GPU's memory as its driver reports it; none on the CPU or a large card.</summary>
    string? ResolveMemoryProfile(string profile, string device)
    {
        if (!profile.Equals("Auto", StringComparison.OrdinalIgnoreCase)) return profile;
        var (chosen, said) = MemoryProfiles.ForDevice(device);
        WriteVerbose(said);
        WriteInformation(new HostInformationMessage { Message = said }, new[] { "DreamBooth", "MemoryProfile" });
        return chosen;
    }

    // -MemoryProfile (memory recipes): explicit -MixedPrecision / -SampleBatchSize stay as given.
    DreamBoothOptions ApplyMemoryProfile(DreamBoothOptions options, string profile)
    {
        var (applied, changes) = MemoryProfiles.Apply(options, profile);
        if (MyInvocation.BoundParameters.ContainsKey(nameof(MixedPrecision))) applied = applied with { MixedPrecision = options.MixedPrecision };
        if (MyInvocation.BoundParameters.ContainsKey(nameof(SampleBatchSize))) applied = applied with { SampleBatchSize = options.SampleBatchSize };
        foreach (var change in changes)
        {
            WriteVerbose($"-MemoryProfile {profile}: {change}");
            WriteInformation(new HostInformationMessage { Message = $"-MemoryProfile {profile}: {change}" }, new[] { "DreamBooth", "MemoryProfile" });
        }
        return applied;
    }

    /// <summary>Sets parameters not given on the command line from a JSON/.psd1 file (names: ours or diffusers' flags).</summary>
    /// <summary>
    /// -Concept's items as concepts: hashtables, objects (ConvertFrom-Json, Import-Csv), JSON object text (a config
    /// file's concepts_list array), or the path of a JSON file holding one object or an array of them. Keys by our
    /// parameter names or diffusers' (instance_data_dir, instance_prompt, class_data_dir, class_prompt); folders resolve
    /// against the current location.
    /// </summary>
    List<DreamBoothConcept> ReadConcepts(IEnumerable<object> items)
    {
        var result = new List<DreamBoothConcept>();
        foreach (var raw in items)
        {
            object item = raw is PSObject pso && pso.BaseObject is not PSCustomObject ? pso.BaseObject : raw;
            if (item is string text)
            {
                try
                {
                    string json = text.TrimStart().StartsWith('{') ? text : File.ReadAllText(ResolvePath(text));
                    using var doc = JsonDocument.Parse(json);
                    var objects = doc.RootElement.ValueKind == JsonValueKind.Array ? doc.RootElement.EnumerateArray().ToList() : new List<JsonElement> { doc.RootElement };
                    result.AddRange(ReadConcepts(objects.Select(o => (object)o.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.ToString()))));
                }
                catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
                {
                    ThrowInputError($"-Concept '{text}' is neither a concept nor a readable concepts_list JSON file: {e.Message}", ErrorCategory.InvalidData, text, "InvalidConcept");
                }
                continue;
            }
            var fields = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
            if (item is IDictionary dict)
                foreach (DictionaryEntry kv in dict) fields[ParameterMap.ToParameterName(kv.Key.ToString()!)] = kv.Value?.ToString();
            else if (item is System.Collections.Generic.IDictionary<string, object?> generic)
                foreach (var kv in generic) fields[ParameterMap.ToParameterName(kv.Key)] = kv.Value?.ToString();
            else
                foreach (var p in PSObject.AsPSObject(item).Properties) fields[ParameterMap.ToParameterName(p.Name)] = p.Value?.ToString();
            string? Field(string name, string alias) => fields.TryGetValue(name, out var v) || fields.TryGetValue(alias, out v) ? (string.IsNullOrWhiteSpace(v) ? null : v) : null;
            var instances = Field(nameof(InstanceDataDirectory), "InstanceDataDir");
            var prompt = Field(nameof(InstancePrompt), nameof(InstancePrompt));
            if (instances is null || prompt is null)
                ThrowInputError($"Each -Concept needs InstanceDataDirectory and InstancePrompt (concept {result.Count + 1} has {string.Join(", ", fields.Keys)}).",
                    ErrorCategory.InvalidArgument, item, "IncompleteConcept");
            var classes = Field(nameof(ClassDataDirectory), "ClassDataDir");
            var repeats = Field(nameof(Repeats), nameof(Repeats));
            if (repeats is not null && !(int.TryParse(repeats, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int r) && r >= 1))
                ThrowInputError($"Concept {result.Count + 1}: Repeats must be a whole number of at least 1 (got '{repeats}').", ErrorCategory.InvalidArgument, item, "InvalidConceptRepeats");
            result.Add(new DreamBoothConcept
            {
                InstanceDataDirectory = ResolvePath(instances!), InstancePrompt = prompt!,
                ClassDataDirectory = classes is null ? null : ResolvePath(classes), ClassPrompt = Field(nameof(ClassPrompt), nameof(ClassPrompt)),
                Repeats = repeats is null ? 1 : int.Parse(repeats, System.Globalization.CultureInfo.InvariantCulture),
            });
        }
        return result;
    }

    void ApplyConfigFile(string path)
    {
        IDictionary settings;
        try
        {
            if (!File.Exists(path)) throw new FileNotFoundException($"Config file '{path}' does not exist.", path);
            if (path.EndsWith(".psd1", StringComparison.OrdinalIgnoreCase))
                settings = (IDictionary)InvokeCommand.InvokeScript($"Import-PowerShellDataFile -LiteralPath '{path.Replace("'", "''")}'")[0].BaseObject;
            else
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(path));
                settings = new Hashtable(StringComparer.OrdinalIgnoreCase);
                foreach (var p in doc.RootElement.EnumerateObject())
                    settings[p.Name] = p.Value.ValueKind switch
                    {
                        JsonValueKind.String => p.Value.GetString(),
                        JsonValueKind.True => true,
                        JsonValueKind.False => false,
                        JsonValueKind.Number => p.Value.TryGetInt64(out var l) ? l : p.Value.GetDouble(),
                        JsonValueKind.Array => p.Value.EnumerateArray().Select(x => x.ToString()).ToArray(),
                        _ => null,
                    };
            }
        }
        catch (Exception e) when (e is not PipelineStoppedException)
        {
            ThrowEngineError(e is FileNotFoundException ? e : new InvalidDataException($"Config file '{path}' could not be read: {e.Message}", e), path, "InvalidConfigFile");
            return;
        }
        var props = GetType().GetProperties().Where(p => p.GetCustomAttribute<ParameterAttribute>() is not null).ToList();
        foreach (DictionaryEntry kv in settings)
        {
            var key = kv.Key.ToString()!;
            var name = ParameterMap.ToParameterName(key);
            var prop = props.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase)
                || (p.GetCustomAttribute<AliasAttribute>()?.AliasNames.Any(a => string.Equals(a, name, StringComparison.OrdinalIgnoreCase)) ?? false));
            if (prop is null || prop.Name == nameof(ConfigFile))
                ThrowInputError($"Config file '{path}' sets '{key}', which is not a parameter of Start-DreamBoothTraining.", ErrorCategory.InvalidData, key, "UnknownConfigKey");
            if (MyInvocation.BoundParameters.ContainsKey(prop!.Name)) continue;   // the command line wins
            try
            {
                object? value = kv.Value is PSObject pso ? pso.BaseObject : kv.Value;
                if (prop.PropertyType == typeof(SwitchParameter)) value = new SwitchParameter(LanguagePrimitives.ConvertTo<bool>(value));
                else value = LanguagePrimitives.ConvertTo(value, prop.PropertyType, System.Globalization.CultureInfo.InvariantCulture);
                prop.SetValue(this, value);
            }
            catch (Exception e) when (e is PSInvalidCastException or InvalidCastException or ArgumentException)
            {
                ThrowInputError($"Config file '{path}': '{key}' = '{kv.Value}' is not a valid {prop.PropertyType.Name}.", ErrorCategory.InvalidData, key, "InvalidConfigValue");
            }
        }
    }
}
