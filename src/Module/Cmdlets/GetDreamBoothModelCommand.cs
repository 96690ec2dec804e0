using System.Management.Automation;
using DreamBooth.Engine.Pipelines;

namespace DreamBooth.Cmdlets;

/// <summary>
/// <para type="synopsis">Describes models (family, default resolution, prediction type, precision, size) without loading their weights.</para>
/// </summary>
[Cmdlet(VerbsCommon.Get, "DreamBoothModel")]
[OutputType(typeof(DreamBoothModelInfo))]
public sealed class GetDreamBoothModelCommand : DreamBoothCmdlet
{
    /// <summary>Model folders (wildcards allowed), training outputs, checkpoint-N folders, LoRA outputs, single .safetensors files or Hub ids in the Hugging Face cache.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "PSPath", "Model")]
    [ValidateNotNullOrEmpty]
    public string[] Path { get; set; } = Array.Empty<string>();

    protected override void ProcessRecord()
    {
        foreach (var path in Path)
            foreach (var target in ExpandPaths(path) ?? new[] { path })   // no such file: a Hub id, from the Hugging Face cache only
                Describe(target);
    }

    void Describe(string target)
    {
        var (source, error) = TryResolveModel(target, offline: true);
        if (error is not null) { WriteError(error); return; }
        try
        {
            var d = ModelDescription.Describe(source!);
            WriteObject(new DreamBoothModelInfo
            {
                Path = d.Path, Kind = d.Kind, BaseModel = d.BaseModel, Family = d.Family, Resolution = d.Resolution,
                PredictionType = d.PredictionType, Inpainting = d.Inpainting, Precision = d.Precision, Scheduler = d.Scheduler,
                TextEncoderLayers = d.TextEncoderLayers, UnetParameters = d.UnetParameters, TextEncoderParameters = d.TextEncoderParameters,
                VaeParameters = d.VaeParameters, SizeGB = Math.Round(d.SizeOnDisk / 1073741824.0, 2),
            });
        }
        catch (Exception e) when (e is not PipelineStoppedException) { WriteError(new ErrorRecord(e, "UnreadableModel", CategoryOf(e), target)); }
    }
}
