using System.Collections;
using System.ComponentModel;
using System.Management.Automation;
using DreamBooth.Engine.Training;

namespace DreamBooth.Cmdlets;

/// <summary>
/// Shared by Start- and Resume-DreamBoothTraining: runs the engine's trainer on a worker thread and turns its events
/// into progress, verbose log lines, checkpoint and image objects, and ShouldProcess for pruning old checkpoints.
/// </summary>
public abstract class TrainingCmdletBase : DreamBoothCmdlet
{
    const int ProgressId = 7;

    /// <summary>
    /// -GradientCheckpointingMode as the engine names it (lower case), or selective for its shorthand -SelectiveCheckpointing;
    /// null when neither is given.
    /// A mode only says what checkpointing recomputes: alone (and with checkpointing off) it warns that it does nothing.
    /// </summary>
    protected string? CheckpointingMode(string? mode, bool selective, bool checkpointingOn)
    {
        if (selective && mode is not null && !mode.Equals("Selective", StringComparison.OrdinalIgnoreCase))
            ThrowInputError($"-SelectiveCheckpointing is short for -GradientCheckpointing -GradientCheckpointingMode Selective, which contradicts -GradientCheckpointingMode {mode}: give one of them.",
                ErrorCategory.InvalidArgument, mode, "ConflictingCheckpointingMode");
        if (mode is not null && !selective && !checkpointingOn && !mode.Equals("Auto", StringComparison.OrdinalIgnoreCase))
            WriteWarning($"-GradientCheckpointingMode {mode} has no effect without -GradientCheckpointing.");
        return mode?.ToLowerInvariant() ?? (selective ? "selective" : null);
    }

    protected void RunTraining(Func<TrainingEvents, CancellationToken, TrainingResult> run)
    {
        var result = RunOnWorker(ch =>
        {
            var events = new TrainingEvents
            {
                Progress = p => ch.Progress(ToProgressRecord(p)),
                Log = ch.Verbose,
                Warning = ch.Warning,
                CheckpointSaved = c => ch.Output(ToCheckpoint(c)),
                ValidationImage = v => ch.Output(new DreamBoothImage
                {
                    Path = v.Path, Prompt = v.Prompt, Seed = v.Seed, TrainingStep = v.Step, Model = "validation",
                }),
                ConfirmDelete = path => ch.Ask(c => c.ShouldProcess(path, "Remove old checkpoint (-CheckpointsTotalLimit)"), false),
            };
            try { return run(events, ch.Token); }
            finally { ch.Progress(new ProgressRecord(ProgressId, "DreamBooth training", "Done") { RecordType = ProgressRecordType.Completed }); }
        });
        WriteObject(ToModel(result));
    }

    static ProgressRecord ToProgressRecord(TrainingProgress p)
    {
        string status = p.Phase switch
        {
            "training" => $"Step {p.Step}/{p.TotalSteps}  loss {p.SmoothedLoss:F4}  lr {p.LearningRate:G3}  {p.StepsPerSecond:F2} it/s",
            _ => p.Message ?? p.Phase,
        };
        var record = new ProgressRecord(ProgressId, "DreamBooth training", status);
        if (p.TotalSteps > 0) record.PercentComplete = Math.Clamp((int)(100.0 * p.Step / p.TotalSteps), 0, 100);
        if (p.Remaining is TimeSpan r) record.SecondsRemaining = (int)Math.Min(int.MaxValue, r.TotalSeconds);
        record.CurrentOperation = p.Phase;
        return record;
    }

    internal static DreamBoothCheckpoint ToCheckpoint(CheckpointInfo c) => new()
    {
        Path = c.Path, Step = c.Step, Epoch = c.Epoch, Loss = c.Loss, LearningRate = c.LearningRate, Time = c.Time,
    };

    static DreamBoothModel ToModel(TrainingResult r)
    {
        var settings = new Hashtable(StringComparer.OrdinalIgnoreCase);
        foreach (var prop in typeof(DreamBoothOptions).GetProperties())
            if (prop.GetIndexParameters().Length == 0 && prop.Name != nameof(DreamBoothOptions.HasValidation)
                && prop.GetCustomAttributes(typeof(EditorBrowsableAttribute), false) is not [EditorBrowsableAttribute { State: EditorBrowsableState.Never }])
                settings[prop.Name] = prop.GetValue(r.Options) switch
                {
                    IReadOnlyList<string> list => list.ToArray(),
                    IReadOnlyList<DreamBoothConcept> concepts => concepts.Select(c => new Hashtable
                    {
                        [nameof(c.InstanceDataDirectory)] = c.InstanceDataDirectory, [nameof(c.InstancePrompt)] = c.InstancePrompt,
                        [nameof(c.ClassDataDirectory)] = c.ClassDataDirectory, [nameof(c.ClassPrompt)] = c.ClassPrompt, [nameof(c.Repeats)] = c.Repeats,
                    }).ToArray(),
                    var value => value,
                };
        return new DreamBoothModel
        {
            Path = r.OutputDirectory, Steps = r.Steps, Epochs = r.Epochs, FinalLoss = r.FinalLoss, Duration = r.Duration,
            Completed = r.Completed, BaseModel = r.Options.Model, InstancePrompt = r.Options.InstancePrompt,
            Checkpoints = r.Checkpoints.Select(ToCheckpoint).ToArray(), Settings = settings,
            PeakDeviceMemoryGB = r.PeakDeviceMemoryBytes is long b ? Math.Round(b / 1073741824.0, 2) : null,
            LogDirectory = TrainingTrackers.DirectoryFor(r.Options),
        };
    }
}
