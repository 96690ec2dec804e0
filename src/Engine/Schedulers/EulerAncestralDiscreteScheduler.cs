using TorchSharp;
using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Schedulers;

/// <summary>diffusers' EulerAncestralDiscreteScheduler (k-diffusion sample_euler_ancestral, eta = 1): draws noise every step.</summary>
public sealed class EulerAncestralDiscreteScheduler : DiscreteSigmaScheduler
{
    public const string DiffusersClassName = "EulerAncestralDiscreteScheduler";

    public static readonly IReadOnlyList<KeyValuePair<string, JsonNode?>> Defaults = new[]
    {
        D("num_train_timesteps", 1000), D("beta_start", 0.0001), D("beta_end", 0.02), D("beta_schedule", "linear"),
        D("trained_betas", null), D("prediction_type", "epsilon"), D("timestep_spacing", "linspace"),
        D("steps_offset", 0), D("rescale_betas_zero_snr", false),
    };

    public EulerAncestralDiscreteScheduler(ConfigJson config, IReadOnlyDictionary<string, JsonNode?>? overrides = null)
        : this(SchedulerConfig.Resolve(config, DiffusersClassName, Defaults, overrides)) { }

    public EulerAncestralDiscreteScheduler(SchedulerConfig config) : base(config)
    {
        if (config.PredictionType == "sample") throw config.Unsupported("prediction_type", "diffusers' EulerAncestral implements epsilon and v_prediction");
        if (config.RescaleBetasZeroSnr) throw config.Unsupported("rescale_betas_zero_snr", "not implemented for this scheduler");
    }

    public override Tensor Step(Tensor modelOutput, double timestep, Tensor sample, Generator? generator = null)
    {
        RequireTimesteps();
        using var scope = NewDisposeScope();
        int i = EnsureStepIndex(timestep);
        float sigma = sigmaValues[i];
        sample = sample.to(ScalarType.Float32);
        var predOriginal = PredictOriginalFromSigma(modelOutput, sample, sigma, sigma);
        float sigmaFrom = sigma, sigmaTo = sigmaValues[i + 1];
        // split the move to sigma_to into a deterministic part (to sigma_down) and fresh noise of std sigma_up
        float sigmaUp = MathF.Sqrt(sigmaTo * sigmaTo * (sigmaFrom * sigmaFrom - sigmaTo * sigmaTo) / (sigmaFrom * sigmaFrom));
        float sigmaDown = MathF.Sqrt(sigmaTo * sigmaTo - sigmaUp * sigmaUp);
        var derivative = (sample - predOriginal) / sigma;
        float dt = sigmaDown - sigma;
        var prev = sample + derivative * dt;
        var noise = RandnTensor.Create(modelOutput.shape, modelOutput.dtype, modelOutput.device, generator);
        prev = (prev + noise * sigmaUp).to(modelOutput.dtype);
        StepIndex = i + 1;
        return prev.MoveToOuterDisposeScope();
    }
}
