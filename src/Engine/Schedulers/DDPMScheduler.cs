using TorchSharp;
using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Schedulers;

/// <summary>
/// diffusers' DDPMScheduler (Ho et al. 2020): ancestral sampling with variance noise, plus the forward-diffusion
/// helpers training uses (<see cref="AddNoise"/>, <see cref="GetVelocity"/>).
/// </summary>
public sealed class DDPMScheduler : SchedulerBase
{
    public const string DiffusersClassName = "DDPMScheduler";

    /// <summary>DDPMScheduler.__init__ defaults (diffusers 0.32.2), in signature order.</summary>
    public static readonly IReadOnlyList<KeyValuePair<string, JsonNode?>> Defaults = new[]
    {
        D("num_train_timesteps", 1000), D("beta_start", 0.0001), D("beta_end", 0.02), D("beta_schedule", "linear"),
        D("trained_betas", null), D("variance_type", "fixed_small"), D("clip_sample", true), D("prediction_type", "epsilon"),
        D("thresholding", false), D("dynamic_thresholding_ratio", 0.995), D("clip_sample_range", 1.0),
        D("sample_max_value", 1.0), D("timestep_spacing", "leading"), D("steps_offset", 0), D("rescale_betas_zero_snr", false),
    };

    public DDPMScheduler(ConfigJson config, IReadOnlyDictionary<string, JsonNode?>? overrides = null)
        : this(SchedulerConfig.Resolve(config, DiffusersClassName, Defaults, overrides)) { }

    public DDPMScheduler(SchedulerConfig config) : base(config)
    {
        if (config.VarianceType is not ("fixed_small" or "fixed_small_log" or "fixed_large"))
            throw config.Unsupported("variance_type", "use fixed_small, fixed_small_log or fixed_large (learned variances need a model that predicts them)");
    }

    public override void SetTimesteps(int numInferenceSteps)
    {
        if (numInferenceSteps < 1 || numInferenceSteps > Config.NumTrainTimesteps)
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), $"must be 1..{Config.NumTrainTimesteps} (num_train_timesteps)");
        NumInferenceSteps = numInferenceSteps;
        var ts = SpacedTimesteps(numInferenceSteps);
        SetSchedule(torch.tensor(ts), ts.Select(t => (double)t).ToArray(), null);
    }

    /// <summary>The timestep after <paramref name="t"/> in the schedule, -1 after the last (diffusers' previous_timestep).</summary>
    public long PreviousTimestep(long t)
    {
        if (NumInferenceSteps is null) return t - 1;
        var idx = IndicesOf(t);
        if (idx.Count == 0) throw new ArgumentException($"{ClassName}: timestep {t} is not in the schedule.");
        int i = idx[0];
        return i == timestepValues.Length - 1 ? -1 : (long)timestepValues[i + 1];
    }

    public override Tensor Step(Tensor modelOutput, double timestep, Tensor sample, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        long t = (long)timestep;
        long prevT = PreviousTimestep(t);
        float alphaProdT = alphasCumprod[t];
        float alphaProdTPrev = prevT >= 0 ? alphasCumprod[prevT] : 1f;
        float betaProdT = 1 - alphaProdT, betaProdTPrev = 1 - alphaProdTPrev;
        float currentAlphaT = alphaProdT / alphaProdTPrev, currentBetaT = 1 - currentAlphaT;

        var predOriginal = ClipOriginal(PredictOriginal(modelOutput, sample, alphaProdT));
        // formula (7) of the DDPM paper: mean of q(x_{t-1} | x_t, x_0)
        float originalCoeff = MathF.Sqrt(alphaProdTPrev) * currentBetaT / betaProdT;
        float currentCoeff = MathF.Sqrt(currentAlphaT) * betaProdTPrev / betaProdT;
        var prev = originalCoeff * predOriginal + currentCoeff * sample;

        if (t > 0)
        {
            var noise = RandnTensor.Create(modelOutput.shape, modelOutput.dtype, modelOutput.device, generator);
            float variance = MathF.Max((1 - alphaProdTPrev) / (1 - alphaProdT) * currentBetaT, 1e-20f);
            float std = Config.VarianceType switch
            {
                "fixed_small" => MathF.Sqrt(variance),
                "fixed_small_log" => MathF.Exp(0.5f * MathF.Log(variance)),
                _ => MathF.Sqrt(currentBetaT), // fixed_large
            };
            prev = prev + std * noise;
        }
        return prev.MoveToOuterDisposeScope();
    }

    /// <summary>The v-prediction target for a batch of int64 timesteps.</summary>
    public Tensor GetVelocity(Tensor sample, Tensor noise, Tensor timesteps) => VelocityWithAlphas(sample, noise, timesteps);
}
