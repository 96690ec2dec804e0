using TorchSharp;
using static TorchSharp.torch;
using TorchSharp.Modules;

namespace DreamBooth.Engine.Training;

/// <summary>Serialisable state of a <see cref="DynamicLossScaler"/> (what GradScaler.state_dict holds besides its constants).</summary>
public sealed record LossScalerState(double Scale, int GrowthTracker);

/// <summary>
/// Dynamic loss scaling for fp16 training, with <c>torch.cuda.amp.GradScaler</c>'s rules (TorchSharp has no GradScaler):
/// multiply the loss by <see cref="LossScale"/> before backward; unscale the grads and check them; on inf/NaN skip the
/// optimizer step and multiply the scale by <see cref="BackoffFactor"/>; after <see cref="GrowthInterval"/> finite steps
/// in a row multiply it by <see cref="GrowthFactor"/>.
/// </summary>
public sealed class DynamicLossScaler
{
    public double GrowthFactor { get; }
    public double BackoffFactor { get; }
    public int GrowthInterval { get; }

    /// <summary>Current scale (a float32 value, as GradScaler keeps it).</summary>
    public double LossScale { get; private set; }
    /// <summary>Finite steps in a row since the last growth or backoff.</summary>
    public int GrowthTracker { get; private set; }

    public DynamicLossScaler(double initScale = 65536.0, double growthFactor = 2.0, double backoffFactor = 0.5, int growthInterval = 2000)
    {
        if (!(initScale > 0)) throw new ArgumentOutOfRangeException(nameof(initScale), initScale, "must be > 0");
        if (!(growthFactor > 1)) throw new ArgumentOutOfRangeException(nameof(growthFactor), growthFactor, "must be > 1");
        if (!(backoffFactor > 0 && backoffFactor < 1)) throw new ArgumentOutOfRangeException(nameof(backoffFactor), backoffFactor, "must be in (0, 1)");
        if (growthInterval < 1) throw new ArgumentOutOfRangeException(nameof(growthInterval), growthInterval, "must be ≥ 1");
        LossScale = (float)initScale; GrowthFactor = growthFactor; BackoffFactor = backoffFactor; GrowthInterval = growthInterval;
    }

    /// <summary><c>scaler.scale(loss)</c>: loss × <see cref="LossScale"/> (differentiable).</summary>
    public Tensor Scale(Tensor loss) => loss * LossScale;

    /// <summary>
    /// Divides every gradient by the scale in place (by float32 1/scale, like GradScaler) and returns true when all are
    /// finite. One host sync per call.
    /// </summary>
    public bool UnscaleAndCheck(IEnumerable<Parameter> parameters)
    {
        using var scope = torch.NewDisposeScope();   // the handles p.grad returns
        return UnscaleAndCheck(parameters.Select(p => p.grad));
    }

    /// <summary><see cref="UnscaleAndCheck(IEnumerable{Parameter})"/> on given gradients (nulls skipped), e.g. host copies.</summary>
    public bool UnscaleAndCheck(IEnumerable<Tensor?> gradients)
    {
        using var scope = torch.NewDisposeScope();
        float invScale = (float)(1.0 / LossScale);
        Tensor? foundInf = null;
        bool cpuNonFinite = false;
        using (torch.no_grad())
        {
            foreach (var g in gradients)
            {
                if (g is null) continue;
                if (FusedUnscaleCpu.Supports(g))
                {
                    // Host gradients (CPU training, offloaded ones): one pass, no device to keep in sync.
                    if (!FusedUnscaleCpu.UnscaleAndCheckFinite(g, invScale)) cpuNonFinite = true;
                    continue;
                }
                g.mul_(invScale);
                // Accumulated on the gradients' device: a copy to the host per parameter would be a sync per parameter on CUDA.
                var bad = torch.isfinite(g).all().logical_not();
                foundInf = foundInf is null ? bad : foundInf.logical_or_(bad.to(foundInf.device));
            }
        }
        if (cpuNonFinite) return false;
        return foundInf is null || !foundInf.item<bool>();
    }

    /// <summary>GradScaler.update: back off on a non-finite step, grow after <see cref="GrowthInterval"/> finite ones.</summary>
    public void Update(bool finite)
    {
        if (!finite)
        {
            LossScale = (float)(LossScale * BackoffFactor);
            GrowthTracker = 0;
            return;
        }
        GrowthTracker++;
        if (GrowthTracker == GrowthInterval)
        {
            LossScale = (float)(LossScale * GrowthFactor);
            GrowthTracker = 0;
        }
    }

    public LossScalerState GetState() => new(LossScale, GrowthTracker);

    public void LoadState(LossScalerState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (!(state.Scale > 0) || !double.IsFinite(state.Scale)) throw new ArgumentException($"Loss scale {state.Scale} is not a positive finite number.", nameof(state));
        if (state.GrowthTracker < 0 || state.GrowthTracker >= GrowthInterval) throw new ArgumentException($"Growth tracker {state.GrowthTracker} is outside 0..{GrowthInterval - 1}.", nameof(state));
        LossScale = state.Scale; GrowthTracker = state.GrowthTracker;
    }
}
