using System.Management.Automation;
using DreamBooth.Engine;
using DreamBooth.Engine.IO;
using DreamBooth.Engine.Pipelines;

namespace DreamBooth.Cmdlets;

/// <summary>
/// <para type="synopsis">Generates images from text (or from a starting image, -InitImage, and a mask, -MaskImage) with a Stable Diffusion model, a DreamBooth output or a checkpoint.</para>
/// </summary>
[Cmdlet(VerbsLifecycle.Invoke, "DreamBoothInference")]
[OutputType(typeof(DreamBoothImage))]
public sealed class InvokeDreamBoothInferenceCommand : DreamBoothCmdlet
{
    /// <summary>A diffusers model folder, a training output folder, or a checkpoint-N folder.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "PSPath", "Path")]
    [ValidateNotNullOrEmpty]
    public string Model { get; set; } = "";

    [Parameter(Mandatory = true, Position = 1, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string[] Prompt { get; set; } = Array.Empty<string>();

    [Parameter(ValueFromPipelineByPropertyName = true)]
    public string? NegativePrompt { get; set; }

    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateRange(1, 1000)]
    public int Steps { get; set; } = 50;

    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateRange(0.0, 100.0)]
    public double GuidanceScale { get; set; } = 7.5;

    /// <summary>diffusers' guidance_rescale: the guided prediction rescaled towards the text prediction's spread by this fraction (0.7 for zero-terminal-SNR models); 0: off.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateRange(0.0, 1.0)]
    public double GuidanceRescale { get; set; }

    /// <summary>Seed of the first image; image i uses Seed + i. Random when omitted (reported on each image).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public long? Seed { get; set; }

    [Parameter(ValueFromPipelineByPropertyName = true)]
    public int? Width { get; set; }

    [Parameter(ValueFromPipelineByPropertyName = true)]
    public int? Height { get; set; }

    /// <summary>Images per prompt.</summary>
    [Parameter]
    [ValidateRange(1, 10000)]
    [Alias("NumImagesPerPrompt")]
    public int Count { get; set; } = 1;

    [Parameter]
    [ValidateRange(1, 64)]
    public int BatchSize { get; set; } = 1;

    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(SchedulerNameCompleter))]
    public string? Scheduler { get; set; }

    /// <summary>Image-to-image: the picture each image starts from (diffusers' StableDiffusionImg2ImgPipeline); its size is the output's unless -Width/-Height are given.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [Alias("Image")]
    public string? InitImage { get; set; }   // no ValidateNotNullOrEmpty: a piped text-to-image DreamBoothImage binds its null

    /// <summary>Inpainting, with -InitImage: white areas of this mask are painted anew, black ones kept (diffusers' StableDiffusionInpaintPipeline).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [Alias("Mask")]
    public string? MaskImage { get; set; }   // a piped DreamBoothImage without a mask binds its null

    /// <summary>With -InitImage: how far to move from it, 0 (unchanged) to 1 (replaced); int(Steps × Strength) steps run. Default 0.8, inpainting 1.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public double? Strength { get; set; }   // range checked in ProcessRecord: a piped text-to-image DreamBoothImage binds its null

    [Parameter]
    [ValidateRange(0, 1000)]   // the engine checks it against the text encoder's own layer count (12 in SD 1.x, 23 in SD 2.x)
    public int ClipSkip { get; set; }

    [Parameter]
    public string OutputDirectory { get; set; } = "outputs";

    /// <summary>auto (CUDA when present), cpu, cuda or cuda:N.</summary>
    [Parameter]
    [ArgumentCompleter(typeof(DeviceNameCompleter))]
    public string Device { get; set; } = "auto";

    /// <summary>auto (fp16 on CUDA, fp32 on CPU), fp32, fp16 or bf16.</summary>
    [Parameter]
    [ValidateSet("auto", "fp32", "fp16", "bf16")]
    public string Precision { get; set; } = "auto";

    // LoRA (issue 8)
    /// <summary>LoRA files (diffusers or kohya layout, detected) applied onto the model for this call; the model's files are not changed.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string[]? LoRA { get; set; }

    /// <summary>Strength of each -LoRA file (one value for all, or one per file); 0 gives the model without the adapter.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public double[]? LoRAScale { get; set; }

    /// <summary>Load the model for this call only instead of keeping it cached for the next call.</summary>
    [Parameter]
    public SwitchParameter NoCache { get; set; }

    /// <summary>Never download a Hub model: use the Hugging Face cache only (as HF_HUB_OFFLINE=1).</summary>
    [Parameter] public SwitchParameter Offline { get; set; }

    protected override void ProcessRecord()
    {
        ValidateGenerationInputs(Width, Height, Scheduler);

        var source = ResolveModel(Model, Offline);

        var loras = new List<Engine.Lora.LoRAReference>();
        if (LoRAScale is not null && LoRA is null)
            ThrowInputError("-LoRAScale needs -LoRA <file>.", ErrorCategory.InvalidArgument, LoRAScale, "LoRAScaleWithoutLoRA");
        if (LoRA is not null)
        {
            var scales = LoRAScale ?? new[] { 1.0 };
            if (scales.Length != 1 && scales.Length != LoRA.Length)
                ThrowInputError($"-LoRAScale takes one value or one per -LoRA file ({LoRA.Length}); got {scales.Length}.", ErrorCategory.InvalidArgument, LoRAScale, "LoRAScaleCount");
            for (int i = 0; i < LoRA.Length; i++)
            {
                var file = ResolvePath(LoRA[i]);
                if (Directory.Exists(file)) file = System.IO.Path.Combine(file, Engine.Lora.LoRAWeights.FileName);
                if (!File.Exists(file)) ThrowInputError($"LoRA file '{file}' does not exist.", ErrorCategory.ObjectNotFound, LoRA[i], "LoRANotFound");
                loras.Add(new Engine.Lora.LoRAReference(file, scales.Length == 1 ? scales[0] : scales[i]));
            }
        }
        string? initImage = null, maskImage = null;
        if (string.IsNullOrEmpty(InitImage)) InitImage = null;
        if (string.IsNullOrEmpty(MaskImage)) MaskImage = null;
        if (MaskImage is not null && InitImage is null)
            ThrowInputError("-MaskImage needs -InitImage <picture>: the mask says which part of that picture to paint anew.", ErrorCategory.InvalidArgument, MaskImage, "MaskWithoutInitImage");
        if (Strength is not null && InitImage is null)
            ThrowInputError("-Strength needs -InitImage <picture>.", ErrorCategory.InvalidArgument, Strength, "StrengthWithoutInitImage");
        if (Strength is double s && !(s >= 0 && s <= 1))
            ThrowInputError($"-Strength must be between 0 (keep the init image) and 1 (replace it); got {s}.", ErrorCategory.InvalidArgument, Strength, "StrengthOutOfRange");
        if (InitImage is not null)
        {
            initImage = ResolvePath(InitImage);
            int width, height;
            try { using var probe = ImageLoader.LoadRgb(initImage); (width, height) = (probe.Width, probe.Height); }
            catch (Exception e) when (e is FileNotFoundException or ImageLoadException)
            {
                ThrowInputError(e.Message + (e is FileNotFoundException ? " Pass the path of a picture as -InitImage." : ""),
                    e is FileNotFoundException ? ErrorCategory.ObjectNotFound : ErrorCategory.InvalidData, InitImage, "InitImageUnreadable");
                return;
            }
            if (MaskImage is not null)
            {
                string mask = ResolvePath(MaskImage);
                try { using var probe = ImageLoader.LoadRgb(mask); }
                catch (Exception e) when (e is FileNotFoundException or ImageLoadException)
                {
                    ThrowInputError(e.Message + (e is FileNotFoundException ? " Pass the path of a black-and-white mask as -MaskImage (white: paint anew)." : ""),
                        e is FileNotFoundException ? ErrorCategory.ObjectNotFound : ErrorCategory.InvalidData, MaskImage, "MaskImageUnreadable");
                    return;
                }
                maskImage = mask;
            }
            int steps = Steps - Engine.Pipelines.InitImage.SkippedSteps(Steps, Strength ?? (MaskImage is null ? 0.8 : 1.0));
            if (steps < 1)
                ThrowInputError($"-Strength {Strength} of -Steps {Steps} leaves no step to run (int({Steps} × {Strength}) = 0): raise -Strength or -Steps.",
                    ErrorCategory.InvalidArgument, Strength, "StrengthLeavesNoStep");
            if ((Width is null || Height is null) && Math.Max(width, height) > 1536)
                WriteWarning($"The init image is {width}×{height} pixels and, as in diffusers, the images come out at its size unless -Width and -Height say otherwise; that takes much memory and time. Pass e.g. -Width 512 -Height {Math.Max(8, (int)Math.Round(512.0 * height / width / 8) * 8)}.");
        }
        var outputDir = ResolvePath(OutputDirectory);
        long seed = Seed ?? Random.Shared.NextInt64(0, uint.MaxValue);
        var options = new TextToImageOptions
        {
            Prompts = Prompt, NegativePrompts = NegativePrompt is null ? null : new[] { NegativePrompt },
            ImagesPerPrompt = Count, Steps = Steps, GuidanceScale = GuidanceScale, GuidanceRescale = GuidanceRescale, Width = Width, Height = Height,
            Seed = seed, Scheduler = Scheduler, BatchSize = BatchSize, ClipSkip = ClipSkip,
            InitImage = initImage, Strength = Strength, MaskImage = maskImage,
        };
        int total = Prompt.Length * Count;

        RunOnWorker(ch =>
        {
            var device = DeviceSelection.Parse(Device);
            var dtype = DeviceSelection.ParsePrecision(Precision, device);
            if (LowPrecisionOnCpu.Warning(device, dtype, "-Precision " + Precision) is string slow) ch.Warning(slow);
            if (LowPrecisionOnCpu.Notice(device, dtype, "-Precision " + Precision) is string emulated) ch.Verbose(emulated);
            ch.Progress(new ProgressRecord(1, "Generating images", $"Loading {source.Path}"));
            using var lease = PipelineCache.Acquire(source, dtype, device, useCache: !NoCache);
            // Adapters hook onto the (possibly cached) pipeline for this call only and come off in Dispose.
            using var adapters = loras.Count > 0 ? Engine.Lora.LoRAAdapterSet.Apply(lease.Pipeline, loras) : null;
            Directory.CreateDirectory(outputDir);
            var stamp = DateTime.Now.ToString("yyyyMMdd-HHmmss");
            var progress = new InlineProgress<DenoiseProgress>(p => ch.Progress(new ProgressRecord(1, "Generating images",
                $"Image {p.Image + 1}/{p.ImageCount}, step {p.Step}/{p.StepCount}")
            { PercentComplete = (int)(100.0 * (p.Image * p.StepCount + p.Step) / Math.Max(1, p.ImageCount * p.StepCount)) }));
            lease.Pipeline.Generate(options, progress, ch.Token, img =>
            {
                var path = UniqueFile(outputDir, $"{stamp}-{img.Index:D3}-{img.Seed}");
                PngWriter.Save(img.Pixels, path, GenerationMetadata.For(img, source.Path));
                ch.Output(ToImage(img, path, source.Path));
                img.Pixels.Dispose();
            });
            ch.Progress(new ProgressRecord(1, "Generating images", "Done") { RecordType = ProgressRecordType.Completed });
            return total;
        });
    }

    internal static DreamBoothImage ToImage(GeneratedImage img, string path, string model, int? step = null) => new()
    {
        Path = path, Prompt = img.Prompt, NegativePrompt = img.NegativePrompt, Seed = img.Seed, Steps = img.Steps,
        GuidanceScale = img.GuidanceScale, GuidanceRescale = img.GuidanceRescale, Scheduler = img.Scheduler, Width = img.Width, Height = img.Height,
        Model = model, Duration = img.Duration, TrainingStep = step, InitImage = img.InitImage, Strength = img.Strength, MaskImage = img.MaskImage,
    };

    static string UniqueFile(string dir, string stem)
    {
        var path = System.IO.Path.Combine(dir, stem + ".png");
        for (int n = 1; File.Exists(path); n++) path = System.IO.Path.Combine(dir, $"{stem}-{n}.png");
        return path;
    }
}
