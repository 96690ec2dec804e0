using System.Management.Automation;
using DreamBooth.Engine;
using DreamBooth.Engine.Sources;
using static TorchSharp.torch;

namespace DreamBooth.Cmdlets;

/// <summary>
/// <para type="synopsis">Converts a single-file SD 1.x/2.x checkpoint (.safetensors, A1111/ComfyUI layout) into a diffusers model folder.</para>
/// </summary>
[Cmdlet(VerbsData.Import, "DreamBoothCheckpoint", SupportsShouldProcess = true)]
[OutputType(typeof(DreamBoothImportResult))]
public sealed class ImportDreamBoothCheckpointCommand : DreamBoothCmdlet
{
    /// <summary>The .safetensors single-file checkpoint. Pickles (.ckpt, .bin) are refused.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "PSPath")]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "";

    /// <summary>The diffusers folder to create.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string Destination { get; set; } = "";

    /// <summary>Image size the model was trained at (SD 1.x 512, SD 2.x 768); inferred when omitted.</summary>
    [Parameter, ValidateRange(64, 4096)] public int? ImageSize { get; set; }

    /// <summary>epsilon or v_prediction (SD 2.x 768 models); the weights cannot tell, so the usual value is chosen and reported.</summary>
    [Parameter, ValidateSet("epsilon", "v_prediction")] public string? PredictionType { get; set; }

    /// <summary>A CLIP tokenizer folder to copy into the model (a single file holds none): CLIP ViT-L/14's for SD 1.x, an SD 2.x model's for SD 2.x.</summary>
    [Parameter] public string? TokenizerFolder { get; set; }

    /// <summary>Cast the weights: fp32, fp16 or bf16. Default: keep the file's.</summary>
    [Parameter, ValidateSet("fp32", "fp16", "bf16")] public string? Precision { get; set; }

    /// <summary>Replace a model already in -Destination.</summary>
    [Parameter] public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        var file = ResolvePath(Path);
        var destination = ResolvePath(Destination);
        if (!File.Exists(file))
            ThrowTerminatingError(new ErrorRecord(new FileNotFoundException($"Checkpoint '{file}' does not exist.", file), "CheckpointNotFound", ErrorCategory.ObjectNotFound, Path));
        if (File.Exists(System.IO.Path.Combine(destination, "model_index.json")) && !Force)
            ThrowTerminatingError(new ErrorRecord(new IOException($"'{destination}' already holds a model. Use -Force to replace it, or choose another -Destination."),
                "DestinationExists", ErrorCategory.ResourceExists, destination));
        if (!ShouldProcess(destination, $"Import single-file checkpoint '{file}'")) return;
        var options = new ImportOptions
        {
            ImageSize = ImageSize, PredictionType = PredictionType, Overwrite = Force,
            TokenizerFolder = TokenizerFolder is null ? null : ResolvePath(TokenizerFolder),
            DType = Precision switch { "fp32" => ScalarType.Float32, "fp16" => ScalarType.Float16, "bf16" => ScalarType.BFloat16, _ => null },
        };
        var report = RunOnWorker(ch => LdmCheckpoint.Import(file, destination, options, new InlineProgress<string>(ch.Verbose), ch.Token));
        foreach (var w in report.Warnings) WriteWarning(w);
        WriteObject(new DreamBoothImportResult
        {
            Path = report.Destination, Source = file, Layout = report.Layout, TensorCount = report.TensorCount,
            Inferred = report.Inferred.ToArray(), IgnoredKeys = report.IgnoredKeys.ToArray(), Warnings = report.Warnings.ToArray(),
        });
    }
}
