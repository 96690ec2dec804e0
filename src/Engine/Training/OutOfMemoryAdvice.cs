namespace DreamBooth.Engine.Training;

/// <summary>
/// The message of a <see cref="TrainingOutOfMemoryException"/>: what ran out, what was saved, and what to do next: the
/// switches a resume can add (<see cref="ResumeMemorySwitches"/>) and, beyond them, the guide's recipes for a new run.
/// Only switches that are still off are suggested.
/// </summary>
public static class OutOfMemoryAdvice
{
    public static string Build(DreamBoothOptions o, string device, int step, string cause, string? checkpoint, bool checkpointIsNew, string? saveError)
    {
        var text = new System.Text.StringBuilder();
        text.Append($"Training ran out of memory on {device} at step {step}: {cause}");
        if (!cause.EndsWith('.')) text.Append('.');
        if (checkpoint is not null)
            text.Append(checkpointIsNew
                ? $" What was learned up to step {step - 1} is saved in '{checkpoint}'."
                : $" The run can continue from '{checkpoint}', where it last resumed.");
        else
            text.Append(saveError is null ? " No optimizer step had finished, so there was nothing to save." : $" Saving a checkpoint failed too ({saveError}).");

        bool onCpu = device.StartsWith("cpu", StringComparison.OrdinalIgnoreCase);
        var resume = new List<string>();
        if (!o.GradientCheckpointing) resume.Add(onCpu ? "-GradientCheckpointing -GradientCheckpointingMode Blocks" : "-GradientCheckpointing");
        else if (GradientCheckpointingMode.IsSelective(o, onCpu)) resume.Add("-GradientCheckpointingMode Blocks");   // whole blocks keep less
        if (!o.OffloadOptimizerState && !onCpu) resume.Add("-OffloadOptimizerState");   // on the CPU it is there already
        if (!o.SetGradsToNone) resume.Add("-SetGradsToNone");
        if (checkpoint is not null && resume.Count > 0)
            text.Append($" Continue with switches that lower memory without changing what is learned: Resume-DreamBoothTraining -Path '{o.OutputDirectory}' {string.Join(" ", resume)}.");
        else if (checkpoint is null && resume.Count > 0)
            text.Append($" Start again with {string.Join(" ", resume)} (they lower memory without changing what is learned).");

        var newRun = new List<string>();
        if (!o.Use8BitAdam && !o.LoRA) newRun.Add("-Use8BitAdam");
        if (o.MixedPrecision == "no" && !onCpu) newRun.Add("-MixedPrecision fp16");   // on the CPU it measured no smaller (benchmarks, sixth pass)
        if (!o.LoRA) newRun.Add("-LoRA");
        if (o.TrainTextEncoder) newRun.Add("no -TrainTextEncoder");
        if (o.TrainBatchSize > 1) newRun.Add("a smaller -TrainBatchSize with -GradientAccumulationSteps");
        newRun.Add($"a smaller -Resolution than {o.Resolution}");
        text.Append($" Further savings need a new run: -MemoryProfile 12GB or 8GB (the guide's recipes), {string.Join(", ", newRun)}.");
        return text.ToString();
    }
}
