using System.Management.Automation;
using DreamBooth.Engine.Training;

namespace DreamBooth.Cmdlets;

/// <summary>
/// <para type="synopsis">Lists the checkpoints of training runs as DreamBoothCheckpoint objects.</para>
/// </summary>
[Cmdlet(VerbsCommon.Get, "DreamBoothCheckpoint")]
[OutputType(typeof(DreamBoothCheckpoint))]
public sealed class GetDreamBoothCheckpointCommand : DreamBoothCmdlet
{
    /// <summary>Training output folders (wildcards allowed) or checkpoint-N folders; DreamBoothModel objects bind by Path.</summary>
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "PSPath", "OutputDirectory")]
    [ValidateNotNullOrEmpty]
    public string[] Path { get; set; } = { "." };

    /// <summary>Only the latest checkpoint of each output folder (the one Resume-DreamBoothTraining takes).</summary>
    [Parameter] public SwitchParameter Latest { get; set; }

    protected override void ProcessRecord()
    {
        foreach (var path in Path)
        {
            var folders = ExpandPaths(path);
            if (folders is null)
            {
                WriteError(new ErrorRecord(new DirectoryNotFoundException(
                    $"'{path}' does not exist. Give a training output folder or one of its checkpoint-N folders."), "PathNotFound", ErrorCategory.ObjectNotFound, path));
                continue;
            }
            foreach (var folder in folders) WriteCheckpoints(folder);
        }
    }

    void WriteCheckpoints(string folder)
    {
        IReadOnlyList<string> checkpoints;
        try { checkpoints = CheckpointStore.FoldersOf(folder); }
        catch (DirectoryNotFoundException e)
        {
            WriteError(new ErrorRecord(e, "NotAFolder", File.Exists(folder) ? ErrorCategory.InvalidArgument : ErrorCategory.ObjectNotFound, folder));
            return;
        }
        if (checkpoints.Count == 0)
        {
            WriteError(new ErrorRecord(new FileNotFoundException(
                $"'{folder}' holds no checkpoint-N folder. Give a Start-DreamBoothTraining output folder (-CheckpointingSteps sets how often checkpoints are saved)."),
                "NoCheckpoints", ErrorCategory.ObjectNotFound, folder));
            return;
        }
        foreach (var checkpoint in Latest ? checkpoints.TakeLast(1) : checkpoints)
        {
            try { WriteObject(TrainingCmdletBase.ToCheckpoint(CheckpointStore.Describe(checkpoint))); }
            catch (Exception e) when (e is InvalidDataException or FileNotFoundException or IOException or UnauthorizedAccessException)
            {
                var category = e is UnauthorizedAccessException ? ErrorCategory.PermissionDenied : ErrorCategory.InvalidData;
                WriteError(new ErrorRecord(e, "UnreadableCheckpoint", category, checkpoint));
            }
        }
    }
}
