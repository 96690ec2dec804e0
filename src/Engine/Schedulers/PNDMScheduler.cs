using TorchSharp;
using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Schedulers;

/// <summary>
/// diffusers' PNDMScheduler (Liu et al. 2022) in its PLMS form (<c>skip_prk_steps: true</c>, the Stable Diffusion
/// setting): a 4th-order linear multistep method on the noise prediction. It runs N+1 model evaluations for N steps
/// (the first timestep is evaluated twice to bootstrap the history).
/// </summary>
public sealed class PNDMScheduler : SchedulerBase
{
    public const string DiffusersClassName = "PNDMScheduler";

    public static readonly IReadOnlyList<KeyValuePair<string, JsonNode?>> Defaults = new[]
    {
        D("num_train_timesteps", 1000), D("beta_start", 0.0001), D("beta_end", 0.02), D("beta_schedule", "linear"),
        D("trained_betas", null), D("skip_prk_steps", false), D("set_alpha_to_one", false), D("prediction_type", "epsilon"),
        D("timestep_spacing", "leading"), D("steps_offset", 0),
    };

    readonly float finalAlphaCumprod;
    readonly List<Tensor> ets = new();   // past model outputs (at most 4)
    Tensor? curSample;
    int counter;

    public PNDMScheduler(ConfigJson config, IReadOnlyDictionary<string, JsonNode?>? overrides = null)
        : this(SchedulerConfig.Resolve(config, DiffusersClassName, Defaults, overrides)) { }

    public PNDMScheduler(SchedulerConfig config) : base(config)
    {
        if (!config.SkipPrkSteps)
            throw config.Unsupported("skip_prk_steps", "only the PLMS form (skip_prk_steps: true, as every Stable Diffusion config sets) is implemented");
        if (config.PredictionType == "sample") throw config.Unsupported("prediction_type", "PNDM supports epsilon and v_prediction");
        finalAlphaCumprod = config.SetAlphaToOne ? 1f : alphasCumprod[0];
    }

    public override void SetTimesteps(int numInferenceSteps)
    {
        if (numInferenceSteps < 2 || numInferenceSteps > Config.NumTrainTimesteps)
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), $"must be 2..{Config.NumTrainTimesteps} for PLMS");
        NumInferenceSteps = numInferenceSteps;
        int T = Config.NumTrainTimesteps;
        // ascending _timesteps
        long[] asc = Config.TimestepSpacing switch
        {
            "linspace" => NumpyMath.Linspace(0, T - 1, numInferenceSteps).Select(x => (long)NumpyMath.Round(x)).ToArray(),
            "leading" => Enumerable.Range(0, numInferenceSteps).Select(i => (long)i * (T / numInferenceSteps) + Config.StepsOffset).ToArray(),
            "trailing" => NumpyMath.Arange(T, 0, -(double)T / numInferenceSteps).Select(x => (long)NumpyMath.Round(x) - 1).Reverse().ToArray(),
            _ => throw Config.Unsupported("timestep_spacing", "use leading, linspace or trailing"),
        };
        // PLMS: repeat the second-to-last so the first step can be evaluated twice
        var plms = asc[..^1].Concat(asc[^2..^1]).Concat(asc[^1..]).Reverse().ToArray();
        SetSchedule(torch.tensor(plms), plms.Select(t => (double)t).ToArray(), null);
        ResetState();
    }

    void ResetState()
    {
        foreach (var e in ets) e.Dispose();
        ets.Clear();
        curSample?.Dispose();
        curSample = null;
        counter = 0;
    }

    public override Tensor Step(Tensor modelOutput, double timestep, Tensor sample, Generator? generator = null)
    {
        RequireTimesteps();
        using var scope = NewDisposeScope();
        int stepRatio = Config.NumTrainTimesteps / NumInferenceSteps!.Value;
        long t = (long)timestep;
        long prevT = t - stepRatio;
        if (counter != 1)
        {
            while (ets.Count > 3) { ets[0].Dispose(); ets.RemoveAt(0); }
            ets.Add(Keep(modelOutput.clone()));
        }
        else
        {
            prevT = t;
            t += stepRatio;
        }

        Tensor eps;
        if (ets.Count == 1 && counter == 0)
        {
            eps = modelOutput;
            curSample = Keep(sample.clone());
        }
        else if (ets.Count == 1 && counter == 1)
        {
            eps = (modelOutput + ets[^1]) / 2;
            sample = curSample!;
            scope.Attach(curSample!); // freed with this step's scope
            curSample = null;
        }
        else if (ets.Count == 2) eps = (3 * ets[^1] - ets[^2]) / 2;
        else if (ets.Count == 3) eps = (23 * ets[^1] - 16 * ets[^2] + 5 * ets[^3]) / 12;
        else eps = (1.0 / 24) * (55 * ets[^1] - 59 * ets[^2] + 37 * ets[^3] - 9 * ets[^4]);

        var prev = PreviousSample(sample, t, prevT, eps);
        counter++;
        return prev.MoveToOuterDisposeScope();
    }

    /// <summary>Formula (9) of the PNDM paper: x_{t-delta} from x_t and the (combined) noise estimate.</summary>
    Tensor PreviousSample(Tensor sample, long t, long prevT, Tensor eps)
    {
        float alphaProdT = alphasCumprod[t];
        float alphaProdTPrev = prevT >= 0 ? alphasCumprod[prevT] : finalAlphaCumprod;
        float betaProdT = 1 - alphaProdT, betaProdTPrev = 1 - alphaProdTPrev;
        if (Config.PredictionType == "v_prediction")
            eps = MathF.Sqrt(alphaProdT) * eps + MathF.Sqrt(betaProdT) * sample;
        float sampleCoeff = MathF.Sqrt(alphaProdTPrev / alphaProdT);
        float denom = alphaProdT * MathF.Sqrt(betaProdTPrev) + MathF.Sqrt(alphaProdT * betaProdT * alphaProdTPrev);
        return sampleCoeff * sample - (alphaProdTPrev - alphaProdT) * eps / denom;
    }

    public override void Dispose() { ResetState(); base.Dispose(); }
}
