using TorchSharp;
using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Schedulers;

/// <summary>diffusers' EulerDiscreteScheduler (Karras et al. 2022, Algorithm 2; deterministic unless SChurn > 0).</summary>
public sealed class EulerDiscreteScheduler : DiscreteSigmaScheduler
{
    public const string DiffusersClassName = "EulerDiscreteScheduler";

    public static readonly IReadOnlyList<KeyValuePair<string, JsonNode?>> Defaults = new[]
    {
        D("num_train_timesteps", 1000), D("beta_start", 0.0001), D("beta_end", 0.02), D("beta_schedule", "linear"),
        D("trained_betas", null), D("prediction_type", "epsilon"), D("interpolation_type", "linear"),
        D("use_karras_sigmas", false), D("use_exponential_sigmas", false), D("use_beta_sigmas", false),
        D("sigma_min", null), D("sigma_max", null), D("timestep_spacing", "linspace"), D("timestep_type", "discrete"),
        D("steps_offset", 0), D("rescale_betas_zero_snr", false), D("final_sigmas_type", "zero"),
    };

    /// <summary>Karras' stochastic churn (step() arguments in diffusers; 0 = plain Euler).</summary>
    public double SChurn { get; set; }
    public double STmin { get; set; }
    public double STmax { get; set; } = double.PositiveInfinity;
    public double SNoise { get; set; } = 1.0;

    public EulerDiscreteScheduler(ConfigJson config, IReadOnlyDictionary<string, JsonNode?>? overrides = null)
        : this(SchedulerConfig.Resolve(config, DiffusersClassName, Defaults, overrides)) { }

    public EulerDiscreteScheduler(SchedulerConfig config) : base(Validate(config)) { }

    static SchedulerConfig Validate(SchedulerConfig config)
    {
        if (config.InterpolationType != "linear") throw config.Unsupported("interpolation_type", "only linear is implemented");
        if (config.TimestepType != "discrete") throw config.Unsupported("timestep_type", "only discrete is implemented");
        if (config.RescaleBetasZeroSnr) throw config.Unsupported("rescale_betas_zero_snr", "not implemented for the Euler scheduler");
        if (config.FinalSigmasType is not ("zero" or "sigma_min")) throw config.Unsupported("final_sigmas_type", "use zero or sigma_min");
        return config;
    }

    protected override float FinalSigma()
        => Config.FinalSigmasType == "sigma_min" ? MathF.Sqrt((1 - alphasCumprod[0]) / alphasCumprod[0]) : 0f;

    public override Tensor Step(Tensor modelOutput, double timestep, Tensor sample, Generator? generator = null)
    {
        RequireTimesteps();
        using var scope = NewDisposeScope();
        int i = EnsureStepIndex(timestep);
        sample = sample.to(ScalarType.Float32);
        float sigma = sigmaValues[i];
        float gamma = STmin <= sigma && sigma <= STmax ? (float)Math.Min(SChurn / (sigmaValues.Length - 1), Math.Sqrt(2) - 1) : 0f;
        float sigmaHat = sigma * (gamma + 1);
        if (gamma > 0)
        {
            var noise = RandnTensor.Create(modelOutput.shape, modelOutput.dtype, modelOutput.device, generator);
            sample = sample + noise * (float)SNoise * MathF.Sqrt(sigmaHat * sigmaHat - sigma * sigma);
        }
        var predOriginal = PredictOriginalFromSigma(modelOutput, sample, sigma, sigmaHat);
        var derivative = (sample - predOriginal) / sigmaHat;   // the ODE derivative dx/dsigma
        float dt = sigmaValues[i + 1] - sigmaHat;
        var prev = (sample + derivative * dt).to(modelOutput.dtype);
        StepIndex = i + 1;
        return prev.MoveToOuterDisposeScope();
    }
}
