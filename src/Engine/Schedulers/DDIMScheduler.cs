using TorchSharp;
using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Schedulers;

/// <summary>diffusers' DDIMScheduler (Song et al. 2020): deterministic for eta = 0 (the pipeline default).</summary>
public sealed class DDIMScheduler : SchedulerBase
{
    public const string DiffusersClassName = "DDIMScheduler";

    public static readonly IReadOnlyList<KeyValuePair<string, JsonNode?>> Defaults = new[]
    {
        D("num_train_timesteps", 1000), D("beta_start", 0.0001), D("beta_end", 0.02), D("beta_schedule", "linear"),
        D("trained_betas", null), D("clip_sample", true), D("set_alpha_to_one", true), D("steps_offset", 0),
        D("prediction_type", "epsilon"), D("thresholding", false), D("dynamic_thresholding_ratio", 0.995),
        D("clip_sample_range", 1.0), D("sample_max_value", 1.0), D("timestep_spacing", "leading"),
        D("rescale_betas_zero_snr", false),
    };

    /// <summary>alphas_cumprod "before" the first training step: 1 (set_alpha_to_one) or alphas_cumprod[0].</summary>
    readonly float finalAlphaCumprod;

    /// <summary>The eta used by <see cref="Step(Tensor, double, Tensor, Generator?)"/> (0 = DDIM, 1 = DDPM-like).</summary>
    public double Eta { get; set; }

    public DDIMScheduler(ConfigJson config, IReadOnlyDictionary<string, JsonNode?>? overrides = null)
        : this(SchedulerConfig.Resolve(config, DiffusersClassName, Defaults, overrides)) { }

    public DDIMScheduler(SchedulerConfig config) : base(config)
        => finalAlphaCumprod = config.SetAlphaToOne ? 1f : alphasCumprod[0];

    public override void SetTimesteps(int numInferenceSteps)
    {
        if (numInferenceSteps < 1 || numInferenceSteps > Config.NumTrainTimesteps)
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), $"must be 1..{Config.NumTrainTimesteps} (num_train_timesteps)");
        NumInferenceSteps = numInferenceSteps;
        var ts = SpacedTimesteps(numInferenceSteps);
        SetSchedule(torch.tensor(ts), ts.Select(t => (double)t).ToArray(), null);
    }

    public override Tensor Step(Tensor modelOutput, double timestep, Tensor sample, Generator? generator = null)
        => Step(modelOutput, timestep, sample, Eta, false, generator);

    /// <summary>DDIM step, formula (12) of the paper; eta > 0 adds sigma_t-scaled noise from <paramref name="generator"/>.</summary>
    public Tensor Step(Tensor modelOutput, double timestep, Tensor sample, double eta, bool useClippedModelOutput, Generator? generator = null)
    {
        RequireTimesteps();
        using var scope = NewDisposeScope();
        long t = (long)timestep;
        long prevT = t - Config.NumTrainTimesteps / NumInferenceSteps!.Value;
        float alphaProdT = alphasCumprod[t];
        float alphaProdTPrev = prevT >= 0 ? alphasCumprod[prevT] : finalAlphaCumprod;
        float betaProdT = 1 - alphaProdT;

        Tensor predOriginal, predEpsilon;
        switch (Config.PredictionType)
        {
            case "epsilon":
                predOriginal = (sample - MathF.Sqrt(betaProdT) * modelOutput) / MathF.Sqrt(alphaProdT);
                predEpsilon = modelOutput;
                break;
            case "sample":
                predOriginal = modelOutput;
                predEpsilon = (sample - MathF.Sqrt(alphaProdT) * predOriginal) / MathF.Sqrt(betaProdT);
                break;
            default: // v_prediction
                predOriginal = MathF.Sqrt(alphaProdT) * sample - MathF.Sqrt(betaProdT) * modelOutput;
                predEpsilon = MathF.Sqrt(alphaProdT) * modelOutput + MathF.Sqrt(betaProdT) * sample;
                break;
        }
        predOriginal = ClipOriginal(predOriginal);

        // sigma_t(eta), formula (16)
        float betaProdTPrev = 1 - alphaProdTPrev;
        float variance = betaProdTPrev / betaProdT * (1 - alphaProdT / alphaProdTPrev);
        float stdDev = (float)eta * MathF.Sqrt(variance);
        if (useClippedModelOutput)
            predEpsilon = (sample - MathF.Sqrt(alphaProdT) * predOriginal) / MathF.Sqrt(betaProdT);

        var direction = MathF.Sqrt(1 - alphaProdTPrev - stdDev * stdDev) * predEpsilon;
        var prev = MathF.Sqrt(alphaProdTPrev) * predOriginal + direction;
        if (eta > 0)
        {
            var noise = RandnTensor.Create(modelOutput.shape, modelOutput.dtype, modelOutput.device, generator);
            prev = prev + stdDev * noise;
        }
        return prev.MoveToOuterDisposeScope();
    }

    public Tensor GetVelocity(Tensor sample, Tensor noise, Tensor timesteps) => VelocityWithAlphas(sample, noise, timesteps);
}
