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
    public bool SelectiveCheckpointing { get; init; }
    public bool OffloadOptimizerState { get; init; }
    public bool SetGradsToNone { get; init; }

    /// <summary>The run's options with these switches on; one line per switch that was off before.</summary>
    public (DreamBoothOptions Options, IReadOnlyList<string> TurnedOn) ApplyTo(DreamBoothOptions o)
    {
        var on = new List<string>();
        if (GradientCheckpointing && !o.GradientCheckpointing) on.Add("-GradientCheckpointing");
        if (SelectiveCheckpointing && !o.SelectiveCheckpointing) on.Add("-SelectiveCheckpointing");
        if (OffloadOptimizerState && !o.OffloadOptimizerState) on.Add("-OffloadOptimizerState");
        if (SetGradsToNone && !o.SetGradsToNone) on.Add("-SetGradsToNone");
        return (o with
        {
            GradientCheckpointing = o.GradientCheckpointing || GradientCheckpointing,
            SelectiveCheckpointing = o.SelectiveCheckpointing || SelectiveCheckpointing,
            OffloadOptimizerState = o.OffloadOptimizerState || OffloadOptimizerState,
            SetGradsToNone = o.SetGradsToNone || SetGradsToNone,
        }, on);
    }
}
