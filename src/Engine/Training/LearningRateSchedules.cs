namespace DreamBooth.Engine.Training;

/// <summary>
/// diffusers <c>optimization.get_scheduler</c> as pure LR multipliers: <c>lr(step) = baseLr · f(step)</c>, where
/// <c>step</c> is the number of optimizer steps already taken (what PyTorch's LambdaLR passes as <c>last_epoch</c>).
/// Being pure functions of the step, resuming needs no scheduler state.
/// </summary>
public static class LearningRateSchedules
{
    /// <summary>diffusers' <c>SchedulerType</c> values we support (piecewise_constant and inverse_sqrt are not).</summary>
    public static readonly IReadOnlyList<string> Names =
        ["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"];

    /// <summary>
    /// The multiplier of <paramref name="name"/> (case-insensitive). Like <c>get_scheduler</c>, "cosine" always uses
    /// half a cycle; <paramref name="numCycles"/> (int, default 1) is the number of hard restarts of
    /// "cosine_with_restarts"; "polynomial" decays from <paramref name="baseLr"/> to <paramref name="lrEnd"/> with
    /// <paramref name="power"/>.
    /// </summary>
    public static Func<int, double> Create(string name, int numWarmupSteps, int numTrainingSteps,
        int numCycles = 1, double power = 1.0, double baseLr = double.NaN, double lrEnd = 1e-7)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (numWarmupSteps < 0) throw new ArgumentOutOfRangeException(nameof(numWarmupSteps), numWarmupSteps, "must be ≥ 0");
        switch (name.Trim().ToLowerInvariant())
        {
            case "constant": return Constant();
            case "constant_with_warmup": return ConstantWithWarmup(numWarmupSteps);
            case "linear": return Linear(numWarmupSteps, numTrainingSteps);
            case "cosine": return Cosine(numWarmupSteps, numTrainingSteps);
            case "cosine_with_restarts": return CosineWithHardRestarts(numWarmupSteps, numTrainingSteps, numCycles);
            case "polynomial":
                if (double.IsNaN(baseLr)) throw new ArgumentException("The polynomial schedule needs the base learning rate (baseLr).", nameof(baseLr));
                return PolynomialDecay(numWarmupSteps, numTrainingSteps, baseLr, lrEnd, power);
            default:
                throw new ArgumentException($"Unknown learning-rate scheduler '{name}'. Supported: {string.Join(", ", Names)}.", nameof(name));
        }
    }

    /// <summary><c>get_constant_schedule</c>.</summary>
    public static Func<int, double> Constant() => _ => 1.0;

    static double Warmup(int step, int numWarmupSteps) => step / (double)Math.Max(1, numWarmupSteps);

    /// <summary><c>get_constant_schedule_with_warmup</c>.</summary>
    public static Func<int, double> ConstantWithWarmup(int numWarmupSteps) =>
        step => step < numWarmupSteps ? Warmup(step, numWarmupSteps) : 1.0;

    /// <summary><c>get_linear_schedule_with_warmup</c>.</summary>
    public static Func<int, double> Linear(int numWarmupSteps, int numTrainingSteps) => step =>
        step < numWarmupSteps ? Warmup(step, numWarmupSteps)
        : Math.Max(0.0, (numTrainingSteps - step) / (double)Math.Max(1, numTrainingSteps - numWarmupSteps));

    /// <summary><c>get_cosine_schedule_with_warmup</c> (num_cycles 0.5 = half a cosine, from 1 down to 0).</summary>
    public static Func<int, double> Cosine(int numWarmupSteps, int numTrainingSteps, double numCycles = 0.5) => step =>
    {
        if (step < numWarmupSteps) return Warmup(step, numWarmupSteps);
        double progress = (step - numWarmupSteps) / (double)Math.Max(1, numTrainingSteps - numWarmupSteps);
        return Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * numCycles * 2.0 * progress)));
    };

    /// <summary><c>get_cosine_with_hard_restarts_schedule_with_warmup</c>.</summary>
    public static Func<int, double> CosineWithHardRestarts(int numWarmupSteps, int numTrainingSteps, int numCycles = 1) => step =>
    {
        if (step < numWarmupSteps) return Warmup(step, numWarmupSteps);
        double progress = (step - numWarmupSteps) / (double)Math.Max(1, numTrainingSteps - numWarmupSteps);
        if (progress >= 1.0) return 0.0;
        return Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * PythonMod(numCycles * progress, 1.0))));
    };

    /// <summary><c>get_polynomial_decay_schedule_with_warmup</c>: the multiplier is relative to <paramref name="baseLr"/>.</summary>
    public static Func<int, double> PolynomialDecay(int numWarmupSteps, int numTrainingSteps, double baseLr, double lrEnd = 1e-7, double power = 1.0)
    {
        if (!(baseLr > lrEnd)) throw new ArgumentException($"lr_end ({lrEnd}) must be smaller than initial lr ({baseLr})", nameof(lrEnd));
        return step =>
        {
            if (step < numWarmupSteps) return Warmup(step, numWarmupSteps);
            if (step > numTrainingSteps) return lrEnd / baseLr;
            double lrRange = baseLr - lrEnd;
            int decaySteps = numTrainingSteps - numWarmupSteps;
            double pctRemaining = 1 - (step - numWarmupSteps) / (double)decaySteps;
            return (lrRange * Math.Pow(pctRemaining, power) + lrEnd) / baseLr;
        };
    }

    /// <summary>Python's float <c>%</c> (result has the sign of the divisor).</summary>
    static double PythonMod(double a, double b)
    {
        double r = a % b;
        return r != 0 && (r < 0) != (b < 0) ? r + b : r;
    }
}
