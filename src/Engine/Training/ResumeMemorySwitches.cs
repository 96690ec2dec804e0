namespace DreamBooth.Engine.Training;

/// <summary>
/// Memory switches a resumed run may turn on (Resume-DreamBoothTraining -GradientCheckpointing …), e.g. after running out
/// of memory: they change where and when things are computed, not what is learned. Offloading and releasing gradients
/// give the same weights bit for bit; checkpointing recomputes the same activations (gradients equal to float rounding).
/// Switches that change the training itself (8-bit moments, mixed precision, resolution, batch size) need a new run.
/// A switch that is off keeps the run's own setting.
/// </summary>
public sealed record ResumeMemorySwitches
{
    public bool GradientCheckpointing { get; init; }
    /// <summary>auto, blocks or selective: what checkpointing recomputes from here on (with it on). Null: the run's own.</summary>
    public string? GradientCheckpointingMode { get; init; }
    public bool OffloadOptimizerState { get; init; }
    public bool SetGradsToNone { get; init; }

    /// <summary>The run's options with these switches on; one line per switch that was off before.</summary>
    public (DreamBoothOptions Options, IReadOnlyList<string> TurnedOn) ApplyTo(DreamBoothOptions o)
    {
        var on = new List<string>();
        bool checkpointing = o.GradientCheckpointing || GradientCheckpointing;
        if (GradientCheckpointing && !o.GradientCheckpointing) on.Add("-GradientCheckpointing");
        string mode = o.GradientCheckpointingMode;
        if (GradientCheckpointingMode is not null)
        {
            string given = Training.GradientCheckpointingMode.Parse(GradientCheckpointingMode);
            if (checkpointing && !given.Equals(mode, StringComparison.OrdinalIgnoreCase)) on.Add("-GradientCheckpointingMode " + given);
            mode = given;
        }
        if (OffloadOptimizerState && !o.OffloadOptimizerState) on.Add("-OffloadOptimizerState");
        if (SetGradsToNone && !o.SetGradsToNone) on.Add("-SetGradsToNone");
        return (o with
        {
            GradientCheckpointing = checkpointing,
            GradientCheckpointingMode = mode,
            OffloadOptimizerState = o.OffloadOptimizerState || OffloadOptimizerState,
            SetGradsToNone = o.SetGradsToNone || SetGradsToNone,
        }, on);
    }
}
