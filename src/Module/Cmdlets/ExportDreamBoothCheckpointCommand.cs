using System.Management.Automation;
using DreamBooth.Engine;
using DreamBooth.Engine.Sources;
using static TorchSharp.torch;

namespace DreamBooth.Cmdlets;

/// <summary>
/// <para type="synopsis">Writes a diffusers model, a DreamBooth output or a checkpoint-N as one SD single-file .safetensors checkpoint (A1111/ComfyUI layout).</para>
/// </summary>
[Cmdlet(VerbsData.Export, "DreamBoothCheckpoint", SupportsShouldProcess = true)]
[OutputType(typeof(DreamBoothExportResult))]
public sealed class ExportDreamBoothCheckpointCommand : DreamBoothCmdlet
{
    /// <summary>A diffusers model folder, a training output folder, or a checkpoint-N folder (its trained weights on its base model).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "PSPath")]
    [ValidateNotNullOrEmpty]
    public string Model { get; set; } = "";

    /// <summary>The .safetensors file to write.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [Alias("Destination")]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "";

    /// <summary>fp16 (the usual 2 GB SD 1.x file), bf16 or fp32. Default: keep the weights' dtype.</summary>
    [Parameter, ValidateSet("fp32", "fp16", "bf16")] public string? Precision { get; set; }

    /// <summary>Overwrite an existing file.</summary>
    [Parameter] public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        var source = ResolveModel(Model, offline: true);
        var file = ResolvePath(Path);
        if (!file.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            ThrowInputError($"-Path must end in .safetensors (got '{file}').", ErrorCategory.InvalidArgument, Path, "NotSafetensorsPath");
        if (File.Exists(file) && !Force)
            ThrowTerminatingError(new ErrorRecord(new IOException($"'{file}' already exists. Use -Force to overwrite it."), "FileExists", ErrorCategory.ResourceExists, file));
        if (!ShouldProcess(file, $"Export '{source.Path}' as a single-file checkpoint")) return;
        var options = new ExportOptions
        {
            DType = Precision switch { "fp32" => ScalarType.Float32, "fp16" => ScalarType.Float16, "bf16" => ScalarType.BFloat16, _ => null },
            UnetWeights = source.UnetDirectory is { } u ? LdmCheckpoint.ComponentWeights(System.IO.Path.GetDirectoryName(u)!, "unet", "diffusion_pytorch_model") : null,
            TextEncoderWeights = source.TextEncoderDirectory is { } t ? LdmCheckpoint.ComponentWeights(System.IO.Path.GetDirectoryName(t)!, "text_encoder", "model") : null,
        };
        var directory = System.IO.Path.GetDirectoryName(file);
        if (!string.IsNullOrEmpty(directory)) Directory.CreateDirectory(directory);
        var report = RunOnWorker(ch => LdmCheckpoint.Export(source.BaseModel, file, options, new InlineProgress<string>(ch.Verbose), ch.Token));
        WriteObject(new DreamBoothExportResult
        {
            Path = report.Path, Model = source.Path, Layout = report.Layout, TensorCount = report.TensorCount, Bytes = report.Bytes, DType = report.DType,
        });
    }
}
