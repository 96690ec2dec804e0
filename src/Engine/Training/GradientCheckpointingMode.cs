namespace DreamBooth.Engine.Training;

/// <summary>
/// What <c>-GradientCheckpointing</c> recomputes in backward (<see cref="DreamBoothOptions.GradientCheckpointingMode"/>):
/// <list type="bullet">
/// <item><c>blocks</c>: whole UNet resnets and transformer blocks, as diffusers does. Saves the most activation memory;
/// costs about one more forward per step.</item>
/// <item><c>selective</c>: only the norm + activation pairs and feed-forward GEGLUs inside them
/// (Models.GradientCheckpointing.Selective). Saves part of it for a few percent of step time.</item>
/// <item><c>auto</c> (default): <c>blocks</c> on a GPU, <c>selective</c> on the CPU. On a card, memory is what runs out
/// first, and the recompute costs little of a fast step. On the CPU, time is what a run runs short of: for SD-1.4 at
/// 512 px, batch 1, selective saves 1.1 GB of the 1.8 GB whole blocks save, for −6% to +1% of the step (within the
/// machine's noise) against +16% to +26% (docs/benchmarks.md, eighteenth pass).</item>
/// </list>
/// Both give gradients equal to the plain ones to float rounding, so the mode never changes what is learned.
/// </summary>
public static class GradientCheckpointingMode
{
    public const string Auto = "auto", Blocks = "blocks", Selective = "selective";
    static readonly string[] Names = { Auto, Blocks, Selective };

    /// <summary>The mode's name in lower case; an <see cref="ArgumentException"/> that lists the modes for anything else.</summary>
    public static string Parse(string mode)
        => Names.FirstOrDefault(n => n.Equals(mode, StringComparison.OrdinalIgnoreCase))
           ?? throw new ArgumentException($"-GradientCheckpointingMode must be auto, blocks or selective (got '{mode}').");

    /// <summary>blocks or selective: what <paramref name="mode"/> means on a CPU or a GPU.</summary>
    public static string Resolve(string mode, bool onCpu)
        => Parse(mode) is Auto ? (onCpu ? Selective : Blocks) : Parse(mode);

    /// <summary>The line a run logs when checkpointing is on: what it recomputes, and why when auto chose.</summary>
    public static string Describe(string mode, bool onCpu)
    {
        bool auto = Parse(mode) == Auto;
        return Resolve(mode, onCpu) == Selective
            ? "Gradient checkpointing recomputes the UNet's norm + activation pairs and feed-forward GEGLUs in backward" +
              (auto ? " (auto on the CPU, where whole blocks cost far more time for the rest of the saving: -GradientCheckpointingMode Blocks recomputes them)." : ".")
            : "Gradient checkpointing recomputes whole UNet resnets and transformer blocks in backward" +
              (auto ? " (auto on a GPU, as diffusers does)." : ".");
    }

    /// <summary>Whether a run with these options recomputes only the selective segments on that device.</summary>
    public static bool IsSelective(DreamBoothOptions o, bool onCpu)
        => o.GradientCheckpointing && Resolve(o.GradientCheckpointingMode, onCpu) == Selective;
}
