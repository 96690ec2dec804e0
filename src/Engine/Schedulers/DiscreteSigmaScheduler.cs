using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Schedulers;

/// <summary>
/// What Euler, Euler-ancestral and LMS share in diffusers (k-diffusion style): float32 timesteps, sigmas interpolated
/// from the training sigmas (+ a final 0), init_noise_sigma = sigma_max (or sqrt(sigma_max^2+1) with leading spacing),
/// inputs scaled by 1/sqrt(sigma^2+1), and an internal step index set by the first timestep seen.
/// </summary>
public abstract class DiscreteSigmaScheduler : SchedulerBase
{
    public int? StepIndex { get; protected set; }
    /// <summary>Where <see cref="SetBeginIndex"/> put the first step (image-to-image); null: found from the first timestep.</summary>
    public int? BeginIndex { get; private set; }

    protected DiscreteSigmaScheduler(SchedulerConfig config) : base(config)
    {
        if (config.UseExponentialSigmas) throw config.Unsupported("use_exponential_sigmas", "not implemented; use use_karras_sigmas or the default schedule");
        if (config.UseBetaSigmas) throw config.Unsupported("use_beta_sigmas", "not implemented; use use_karras_sigmas or the default schedule");
        var training = TrainingSigmas();
        var initial = Enumerable.Reverse(training).Append(0f).ToArray();
        SetSchedule(torch.tensor(Enumerable.Range(0, config.NumTrainTimesteps).Select(i => (float)(config.NumTrainTimesteps - 1 - i)).ToArray()),
            Enumerable.Range(0, config.NumTrainTimesteps).Select(i => (double)(config.NumTrainTimesteps - 1 - i)).ToArray(), initial);
    }

    public override double InitNoiseSigma
    {
        get
        {
            double max = sigmaValues.Max();
            return Config.TimestepSpacing is "linspace" or "trailing" ? max : MathF.Sqrt((float)max * (float)max + 1);
        }
    }

    /// <summary>Timesteps and sigmas for N steps: numpy's float32 spacing, np.interp of the training sigmas, optional Karras.</summary>
    public override void SetTimesteps(int numInferenceSteps)
    {
        if (numInferenceSteps < 1) throw new ArgumentOutOfRangeException(nameof(numInferenceSteps));
        NumInferenceSteps = numInferenceSteps;
        var timesteps = SpacedFloatTimesteps(numInferenceSteps).Select(x => (double)x).ToArray();
        var training = TrainingSigmas();
        double[] sigmas = InterpolateSigmas(timesteps, training);
        if (Config.UseKarrasSigmas)
        {
            var logSigmas = training.Select(s => MathF.Log(s)).ToArray();
            sigmas = NumpyMath.KarrasSigmas(Config.SigmaMin ?? sigmas[^1], Config.SigmaMax ?? sigmas[0], numInferenceSteps);
            timesteps = sigmas.Select(s => NumpyMath.SigmaToT(s, logSigmas)).ToArray();
        }
        var final = FinalSigma();
        var sig = sigmas.Select(s => (float)s).Append(final).ToArray();
        var ts = timesteps.Select(t => (float)t).ToArray();
        SetSchedule(torch.tensor(ts), ts.Select(t => (double)t).ToArray(), sig);
        StepIndex = null;
        BeginIndex = null;
        OnSetTimesteps();
    }

    protected virtual double[] InterpolateSigmas(double[] timesteps, float[] training)
        => timesteps.Select(t => NumpyMath.Interp(t, training)).ToArray();

    protected virtual float FinalSigma() => 0f;

    protected virtual void OnSetTimesteps() { }

    /// <summary>diffusers' index_for_timestep: the second match if the timestep repeats (img2img safety), else the first.</summary>
    protected int IndexForTimestep(double timestep)
    {
        var idx = IndicesOf(timestep);
        if (idx.Count == 0) throw new ArgumentException($"{ClassName}: timestep {timestep} is not in the schedule; pass an element of Timesteps.");
        return idx.Count > 1 ? idx[1] : idx[0];
    }

    protected int EnsureStepIndex(double timestep) => StepIndex ??= BeginIndex ?? IndexForTimestep(timestep);

    public override void SetBeginIndex(int index) => BeginIndex = index;

    /// <summary>x0 + noise · sigma: the sigma of the current step, else of the begin index, else of each timestep.</summary>
    public override Tensor AddNoise(Tensor original, Tensor noise, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var sigma = torch.tensor(SigmasFor(timesteps), dtype: original.dtype, device: original.device)
            .reshape(new long[] { -1 }.Concat(Enumerable.Repeat(1L, (int)original.dim() - 1)).ToArray());
        return (original + noise * sigma).MoveToOuterDisposeScope();
    }

    float[] SigmasFor(Tensor timesteps)
    {
        var ts = timesteps.cpu().to(ScalarType.Float64).flatten().data<double>().ToArray();
        return ts.Select(t => sigmaValues[BeginIndex is null ? IndexForTimestep(t) : StepIndex ?? BeginIndex.Value]).ToArray();
    }

    public override Tensor ScaleModelInput(Tensor sample, double timestep)
    {
        float sigma = sigmaValues[EnsureStepIndex(timestep)];
        return sample / MathF.Sqrt(sigma * sigma + 1);
    }

    /// <summary>x0 from the model output in the sigma (k-diffusion) parameterisation.</summary>
    protected Tensor PredictOriginalFromSigma(Tensor modelOutput, Tensor sample, float sigma, float sigmaHat)
        => Config.PredictionType switch
        {
            "epsilon" => sample - sigmaHat * modelOutput,
            "sample" => modelOutput.alias(),
            _ => modelOutput * (-sigma / MathF.Sqrt(sigma * sigma + 1)) + sample / (sigma * sigma + 1),
        };
}
