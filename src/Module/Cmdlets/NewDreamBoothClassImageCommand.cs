using System.Management.Automation;
using DreamBooth.Engine;
using DreamBooth.Engine.IO;
using DreamBooth.Engine.Pipelines;

namespace DreamBooth.Cmdlets;

/// <summary>
/// <para type="synopsis">Generates the class images prior preservation needs: only the shortfall up to -Count.</para>
/// </summary>
[Cmdlet(VerbsCommon.New, "DreamBoothClassImage", SupportsShouldProcess = true)]
[Alias("New-ClassImages")]
[OutputType(typeof(DreamBoothImage))]
public sealed class NewDreamBoothClassImageCommand : DreamBoothCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "PSPath", "Path")]
    [ValidateNotNullOrEmpty]
    public string Model { get; set; } = "";

    /// <summary>e.g. 'a photo of dog' (diffusers' --class_prompt).</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [Alias("Prompt")]
    [ValidateNotNullOrEmpty]
    public string ClassPrompt { get; set; } = "";

    /// <summary>The class image folder (diffusers' --class_data_dir); created when missing.</summary>
    [Parameter(Mandatory = true, Position = 2)]
    [Alias("ClassDataDirectory")]
    [ValidateNotNullOrEmpty]
    public string OutputDirectory { get; set; } = "";

    /// <summary>How many class images the folder should hold (diffusers' --num_class_images).</summary>
    [Parameter]
    [Alias("NumClassImages")]
    [ValidateRange(1, 100000)]
    public int Count { get; set; } = 100;

    /// <summary>Images generated together (diffusers' --sample_batch_size).</summary>
    [Parameter]
    [Alias("SampleBatchSize")]
    [ValidateRange(1, 64)]
    public int BatchSize { get; set; } = 4;

    [Parameter] public string? NegativePrompt { get; set; }
    [Parameter, ValidateRange(1, 1000)] public int Steps { get; set; } = 50;
    [Parameter, ValidateRange(0.0, 100.0)] public double GuidanceScale { get; set; } = 7.5;
    [Parameter] public long? Seed { get; set; }
    [Parameter] public int? Width { get; set; }
    [Parameter] public int? Height { get; set; }
    [Parameter, ArgumentCompleter(typeof(SchedulerNameCompleter))] public string? Scheduler { get; set; }
    [Parameter, ArgumentCompleter(typeof(DeviceNameCompleter))] public string Device { get; set; } = "auto";
    [Parameter, ValidateSet("auto", "fp32", "fp16", "bf16")] public string Precision { get; set; } = "auto";

    /// <summary>The guide's memory recipe: 8GB generates one image at a time in fp16 (explicit -BatchSize / -Precision win); 16GB and 12GB change nothing here.</summary>
    [Parameter, ValidateSet("16GB", "12GB", "8GB")] public string? MemoryProfile { get; set; }

    /// <summary>Never download a Hub model: use the Hugging Face cache only (as HF_HUB_OFFLINE=1).</summary>
    [Parameter] public SwitchParameter Offline { get; set; }

    protected override void ProcessRecord()
    {
        if (MemoryProfile == "8GB")
        {
            if (!MyInvocation.BoundParameters.ContainsKey(nameof(BatchSize))) BatchSize = 1;
            if (!MyInvocation.BoundParameters.ContainsKey(nameof(Precision))) Precision = "fp16";
            WriteInformation(new HostInformationMessage { Message = $"-MemoryProfile 8GB: -BatchSize {BatchSize}, -Precision {Precision}" }, new[] { "DreamBooth", "MemoryProfile" });
        }
        ValidateGenerationInputs(Width, Height, Scheduler);
        var source = ResolveModel(Model, Offline);

        var dir = ResolvePath(OutputDirectory);
        var plan = ClassImageGenerator.Inspect(dir, Count);
        var message = $"Class images in '{plan.Directory}': found {plan.Existing}, generating {plan.Missing}.";
        WriteVerbose(message);
        WriteInformation(message, new[] { "DreamBooth" });
        if (plan.Missing == 0) return;
        if (!ShouldProcess(plan.Directory, $"Generate {plan.Missing} class image(s) for '{ClassPrompt}'")) return;

        var options = new TextToImageOptions
        {
            Prompts = new[] { ClassPrompt }, NegativePrompts = NegativePrompt is null ? null : new[] { NegativePrompt },
            Steps = Steps, GuidanceScale = GuidanceScale, Width = Width, Height = Height, Scheduler = Scheduler,
            BatchSize = BatchSize, Seed = Seed ?? Random.Shared.NextInt64(0, uint.MaxValue),
        };
        RunOnWorker(ch =>
        {
            var device = DeviceSelection.Parse(Device);
            var dtype = DeviceSelection.ParsePrecision(Precision, device);
            if (LowPrecisionOnCpu.Warning(device, dtype, "-Precision " + Precision) is string slow) ch.Warning(slow);
            if (LowPrecisionOnCpu.Notice(device, dtype, "-Precision " + Precision) is string emulated) ch.Verbose(emulated);
            ch.Progress(new ProgressRecord(2, "Generating class images", message));
            using var lease = PipelineCache.Acquire(source, dtype, device);
            var progress = new InlineProgress<DenoiseProgress>(p => ch.Progress(new ProgressRecord(2, "Generating class images",
                $"{message} Image {p.Image + 1}/{p.ImageCount}, step {p.Step}/{p.StepCount}")
            { PercentComplete = (int)(100.0 * (p.Image * p.StepCount + p.Step) / Math.Max(1, p.ImageCount * p.StepCount)) }));
            ClassImageGenerator.Generate(lease.Pipeline, plan, options, progress, ch.Token, info =>
            {
                ch.Output(InvokeDreamBoothInferenceCommand.ToImage(info.Image, info.Path, source.Path));
                info.Image.Pixels.Dispose();
            });
            ch.Progress(new ProgressRecord(2, "Generating class images", "Done") { RecordType = ProgressRecordType.Completed });
            return plan.Missing;
        });
    }
}
