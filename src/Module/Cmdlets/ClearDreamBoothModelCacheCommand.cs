using System.Management.Automation;
using DreamBooth.Engine.Pipelines;

namespace DreamBooth.Cmdlets;

/// <summary>
/// <para type="synopsis">Releases the models Invoke-DreamBoothInference keeps loaded between calls.</para>
/// </summary>
[Cmdlet(VerbsCommon.Clear, "DreamBoothModelCache", SupportsShouldProcess = true)]
[OutputType(typeof(int))]
public sealed class ClearDreamBoothModelCacheCommand : DreamBoothCmdlet
{
    /// <summary>Emit how many cached models were released.</summary>
    [Parameter] public SwitchParameter PassThru { get; set; }

    protected override void EndProcessing()
    {
        var entries = PipelineCache.Entries();
        if (entries.Count == 0) { if (PassThru) WriteObject(0); return; }
        if (!ShouldProcess(string.Join(", ", entries.Select(e => $"{e.Path} ({e.DType}, {e.Device})")), "Release cached model")) return;
        int n = PipelineCache.Clear();
        WriteVerbose($"Released {n} cached model(s).");
        if (PassThru) WriteObject(n);
    }
}
