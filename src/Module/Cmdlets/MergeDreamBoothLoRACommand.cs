using System.Management.Automation;
using DreamBooth.Engine.Lora;

namespace DreamBooth.Cmdlets;

/// <summary>
/// <para type="synopsis">Bakes LoRA adapters into a Stable Diffusion model and saves a full diffusers model folder.</para>
/// <para type="description">What diffusers' pipe.fuse_lora() then save_pretrained() gives: UNet and text encoder with
/// W + scale · B·A, VAE, tokenizer and scheduler copied. -Model may itself be a LoRA run's output or checkpoint; its
/// adapters are merged first. The base model's files are not changed.</para>
/// </summary>
[Cmdlet(VerbsData.Merge, "DreamBoothLoRA", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(DirectoryInfo))]
public sealed class MergeDreamBoothLoRACommand : DreamBoothCmdlet
{
    /// <summary>The base model: a diffusers folder, a training output, a checkpoint-N, or a LoRA run's output.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNullOrEmpty]
    public string Model { get; set; } = "";

    /// <summary>LoRA files (diffusers or kohya layout) or LoRA output folders. Optional when -Model is a LoRA output.</summary>
    [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "Path")]
    public string[]? LoRA { get; set; }

    /// <summary>Strength of each -LoRA file (one value for all, or one per file).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public double[]? LoRAScale { get; set; }

    [Parameter(Mandatory = true)]
    [Alias("OutputDir")]
    [ValidateNotNullOrEmpty]
    public string OutputDirectory { get; set; } = "";

    /// <summary>Write into a non-empty output folder, replacing its model components.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void EndProcessing()
    {
        var model = ResolvePath(Model);
        var output = ResolvePath(OutputDirectory);
        var files = (LoRA ?? Array.Empty<string>()).Select(ResolvePath)
            .Select(f => Directory.Exists(f) ? System.IO.Path.Combine(f, LoRAWeights.FileName) : f).ToList();
        var scales = LoRAScale ?? new[] { 1.0 };
        if (files.Count > 0 && scales.Length != 1 && scales.Length != files.Count)
            ThrowInputError($"-LoRAScale takes one value or one per -LoRA file ({files.Count}); got {scales.Length}.", ErrorCategory.InvalidArgument, LoRAScale, "LoRAScaleCount");
        foreach (var f in files)
            if (!File.Exists(f)) ThrowInputError($"LoRA file '{f}' does not exist.", ErrorCategory.ObjectNotFound, f, "LoRANotFound");
        bool modelIsLoRA = false;
        try { modelIsLoRA = Engine.Pipelines.ModelSource.Resolve(model).IsLoRA; }
        catch (Exception e) { ThrowEngineError(e, model, "ModelNotFound"); }
        if (files.Count == 0 && !modelIsLoRA)
            ThrowInputError("Give -LoRA <file> (or a LoRA run's output as -Model).", ErrorCategory.InvalidArgument, model, "NoLoRA");
        var refs = files.Select((f, i) => new LoRAReference(f, scales.Length == 1 ? scales[0] : scales[i])).ToList();
        if (!ShouldProcess(output, $"Merge {refs.Count + (modelIsLoRA ? 1 : 0)} LoRA adapter(s) into '{model}' and save the model")) return;

        RunOnWorker(ch =>
        {
            ch.Progress(new ProgressRecord(1, "Merging LoRA", $"Loading {model}"));
            try
            {
                var path = LoRAMerger.MergeToFolder(model, refs, output, overwrite: Force);
                ch.Progress(new ProgressRecord(1, "Merging LoRA", "Done") { RecordType = ProgressRecordType.Completed });
                ch.Output(new DirectoryInfo(path));
            }
            catch (IOException e) when (e.Message.Contains("is not empty"))
            {
                throw new IOException(e.Message.Replace("(or allow overwriting)", "(or add -Force)"), e);
            }
            return 0;
        });
    }
}
