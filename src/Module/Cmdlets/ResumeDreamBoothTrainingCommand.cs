using System.Management.Automation;
using DreamBooth.Engine.Training;

namespace DreamBooth.Cmdlets;

/// <summary>
/// <para type="synopsis">Continues a DreamBooth run exactly where a checkpoint left it (the latest, or a given checkpoint-N).</para>
/// </summary>
[Cmdlet(VerbsLifecycle.Resume, "DreamBoothTraining", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(DreamBoothCheckpoint), typeof(DreamBoothImage), typeof(DreamBoothModel))]
public sealed class ResumeDreamBoothTrainingCommand : TrainingCmdletBase
{
    /// <summary>The run's output folder (resumes from its latest checkpoint) or one checkpoint-N folder.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "PSPath", "OutputDirectory")]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "";

    /// <summary>Train to this many steps in total (larger than the checkpoint's step); default: the run's own setting.</summary>
    [Parameter, ValidateRange(1, int.MaxValue)]
    public int? MaxTrainSteps { get; set; }

    /// <summary>From here on, recompute UNet block activations in backward (less memory; what is learned stays the same).</summary>
    [Parameter] public SwitchParameter GradientCheckpointing { get; set; }

    /// <summary>From here on, what checkpointing recomputes: Auto, Blocks (the least memory) or Selective.</summary>
    [Parameter, ValidateSet("Auto", "Blocks", "Selective")] public string? GradientCheckpointingMode { get; set; }

    /// <summary>Short for -GradientCheckpointing -GradientCheckpointingMode Selective.</summary>
    [Parameter] public SwitchParameter SelectiveCheckpointing { get; set; }

    /// <summary>From here on, keep optimizer state (and on a GPU the gradients) in CPU memory; same weights.</summary>
    [Parameter] public SwitchParameter OffloadOptimizerState { get; set; }

    /// <summary>From here on, release gradients after each step instead of zeroing them; same weights.</summary>
    [Parameter] public SwitchParameter SetGradsToNone { get; set; }

    protected override void ProcessRecord()
    {
        var path = ResolvePath(Path);
        string checkpoint = "";
        bool wasCheckpointing = false;
        try
        {
            checkpoint = CheckpointStore.FindForResume(path);
            var state = CheckpointStore.ReadState(checkpoint);
            wasCheckpointing = state.Options.GradientCheckpointing;
            if (MaxTrainSteps is int m && m <= state.GlobalStep)
                throw new ArgumentOutOfRangeException(nameof(MaxTrainSteps), m, $"The checkpoint is already at step {state.GlobalStep}; -MaxTrainSteps must be larger to train further.");
        }
        catch (Exception e) { ThrowEngineError(e, path, "InvalidCheckpoint"); }
        string? checkpointingMode = CheckpointingMode(GradientCheckpointingMode, SelectiveCheckpointing, GradientCheckpointing || wasCheckpointing);
        if (!ShouldProcess(checkpoint, "Resume DreamBooth training")) return;
        var memory = new ResumeMemorySwitches
        {
            GradientCheckpointing = GradientCheckpointing || SelectiveCheckpointing, GradientCheckpointingMode = checkpointingMode,
            OffloadOptimizerState = OffloadOptimizerState, SetGradsToNone = SetGradsToNone,
        };
        RunTraining((events, token) => DreamBoothTrainer.Resume(checkpoint, MaxTrainSteps, events, token, memory));
    }
}
