using TorchSharp;
using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Schedulers;

/// <summary>
/// diffusers' DPMSolverMultistepScheduler with algorithm_type "dpmsolver++" (Lu et al. 2022): data-prediction
/// multistep solver of order 1-3 (2 = "DPM++ 2M"), lower_order_final for short schedules, optional Karras sigmas.
/// Coefficients are computed in float32 like diffusers' 0-dim tensors.
/// </summary>
public sealed class DPMSolverMultistepScheduler : SchedulerBase
{
    public const string DiffusersClassName = "DPMSolverMultistepScheduler";

    public static readonly IReadOnlyList<KeyValuePair<string, JsonNode?>> Defaults = new[]
    {
        D("num_train_timesteps", 1000), D("beta_start", 0.0001), D("beta_end", 0.02), D("beta_schedule", "linear"),
        D("trained_betas", null), D("solver_order", 2), D("prediction_type", "epsilon"), D("thresholding", false),
        D("dynamic_thresholding_ratio", 0.995), D("sample_max_value", 1.0), D("algorithm_type", "dpmsolver++"),
        D("solver_type", "midpoint"), D("lower_order_final", true), D("euler_at_final", false),
        D("use_karras_sigmas", false), D("use_exponential_sigmas", false), D("use_beta_sigmas", false),
        D("use_lu_lambdas", false), D("use_flow_sigmas", false), D("flow_shift", 1.0), D("final_sigmas_type", "zero"),
        D("lambda_min_clipped", "-Infinity"), D("variance_type", null), D("timestep_spacing", "linspace"),
        D("steps_offset", 0), D("rescale_betas_zero_snr", false),
    };

    readonly Tensor?[] modelOutputs;   // the last solver_order converted outputs (x0 predictions), oldest first
    int lowerOrderNums;
    public int? StepIndex { get; private set; }
    /// <summary>Where <see cref="SetBeginIndex"/> put the first step (image-to-image); null: found from the first timestep.</summary>
    public int? BeginIndex { get; private set; }

    public DPMSolverMultistepScheduler(ConfigJson config, IReadOnlyDictionary<string, JsonNode?>? overrides = null)
        : this(SchedulerConfig.Resolve(config, DiffusersClassName, Defaults, overrides)) { }

    public DPMSolverMultistepScheduler(SchedulerConfig config) : base(config)
    {
        if (config.AlgorithmType != "dpmsolver++")
            throw config.Unsupported("algorithm_type", "only dpmsolver++ (DPM++ 2M, the Stable Diffusion choice) is implemented");
        if (config.SolverType is not ("midpoint" or "heun")) throw config.Unsupported("solver_type", "use midpoint or heun");
        if (config.SolverOrder is < 1 or > 3) throw config.Unsupported("solver_order", "use 1, 2 or 3");
        if (config.UseExponentialSigmas) throw config.Unsupported("use_exponential_sigmas", "not implemented");
        if (config.UseBetaSigmas) throw config.Unsupported("use_beta_sigmas", "not implemented");
        if (config.UseLuLambdas) throw config.Unsupported("use_lu_lambdas", "not implemented");
        if (config.UseFlowSigmas) throw config.Unsupported("use_flow_sigmas", "flow-matching models are not Stable Diffusion 1.x");
        if (config.RescaleBetasZeroSnr) throw config.Unsupported("rescale_betas_zero_snr", "not implemented for DPM-Solver");
        if (Config.Json.Get<string?>("variance_type", null) is not null) throw config.Unsupported("variance_type", "learned variances are not supported");
        if (config.FinalSigmasType is not ("zero" or "sigma_min")) throw config.Unsupported("final_sigmas_type", "use zero or sigma_min");
        modelOutputs = new Tensor?[config.SolverOrder];
    }

    public override void SetTimesteps(int numInferenceSteps)
    {
        if (numInferenceSteps < 1 || numInferenceSteps > Config.NumTrainTimesteps)
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), $"must be 1..{Config.NumTrainTimesteps}");
        int T = Config.NumTrainTimesteps;
        int lastTimestep = T - ClippedIndex();
        double[] timesteps = Config.TimestepSpacing switch
        {
            "linspace" => NumpyMath.Linspace(0, lastTimestep - 1, numInferenceSteps + 1).Select(NumpyMath.Round).Reverse().Take(numInferenceSteps).ToArray(),
            "leading" => Enumerable.Range(0, numInferenceSteps + 1).Select(i => (double)(i * (lastTimestep / (numInferenceSteps + 1)))).Reverse()
                .Take(numInferenceSteps).Select(t => t + Config.StepsOffset).ToArray(),
            "trailing" => NumpyMath.Arange(lastTimestep, 0, -(double)T / numInferenceSteps).Select(t => NumpyMath.Round(t) - 1).ToArray(),
            _ => throw Config.Unsupported("timestep_spacing", "use leading, linspace or trailing"),
        };
        var training = TrainingSigmas();
        double[] sigmas;
        if (Config.UseKarrasSigmas)
        {
            var logSigmas = training.Select(s => MathF.Log(s)).ToArray();
            sigmas = NumpyMath.KarrasSigmas(Config.SigmaMin ?? training[0], Config.SigmaMax ?? training[^1], numInferenceSteps);
            timesteps = sigmas.Select(s => NumpyMath.Round(NumpyMath.SigmaToT(s, logSigmas))).ToArray();
        }
        else sigmas = timesteps.Select(t => NumpyMath.Interp(t, training)).ToArray();
        float last = Config.FinalSigmasType == "sigma_min" ? MathF.Sqrt((1 - alphasCumprod[0]) / alphasCumprod[0]) : 0f;
        var sig = sigmas.Select(s => (float)s).Append(last).ToArray();
        var ts = timesteps.Select(t => (long)t).ToArray();
        SetSchedule(torch.tensor(ts), ts.Select(t => (double)t).ToArray(), sig);
        NumInferenceSteps = ts.Length;
        ResetState();
    }

    /// <summary>torch.searchsorted(flip(lambda_t), lambda_min_clipped): how many of the noisiest steps to cut (0 for -inf).</summary>
    int ClippedIndex()
    {
        double clip = Config.LambdaMinClipped;
        if (double.IsNegativeInfinity(clip)) return 0;
        using var scope = NewDisposeScope();
        var lambdaT = AlphasCumprod.sqrt().log() - (1 - AlphasCumprod).sqrt().log();
        var flipped = lambdaT.flip(0).data<float>().ToArray();
        int idx = 0;
        while (idx < flipped.Length && flipped[idx] < clip) idx++;
        return idx;
    }

    void ResetState()
    {
        for (int i = 0; i < modelOutputs.Length; i++) { modelOutputs[i]?.Dispose(); modelOutputs[i] = null; }
        lowerOrderNums = 0;
        StepIndex = null;
        BeginIndex = null;
    }

    int IndexForTimestep(double timestep)
    {
        var idx = IndicesOf(timestep);
        if (idx.Count == 0) return timestepValues.Length - 1;
        return idx.Count > 1 ? idx[1] : idx[0];
    }

    public override void SetBeginIndex(int index) => BeginIndex = index;

    /// <summary>alpha_t · x0 + sigma_t · noise at the sigma of the current step, else of the begin index, else of each timestep.</summary>
    public override Tensor AddNoise(Tensor original, Tensor noise, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var ts = timesteps.cpu().to(ScalarType.Float64).flatten().data<double>().ToArray();
        var factors = ts.Select(t => AlphaSigma(sigmaValues[BeginIndex is null ? IndexForTimestep(t) : StepIndex ?? BeginIndex.Value])).ToArray();
        var shape = new long[] { -1 }.Concat(Enumerable.Repeat(1L, (int)original.dim() - 1)).ToArray();
        var alpha = torch.tensor(factors.Select(f => f.alpha).ToArray(), dtype: original.dtype, device: original.device).reshape(shape);
        var sigma = torch.tensor(factors.Select(f => f.sigma).ToArray(), dtype: original.dtype, device: original.device).reshape(shape);
        return (alpha * original + sigma * noise).MoveToOuterDisposeScope();
    }

    static (float alpha, float sigma) AlphaSigma(float sigma)
    {
        float alpha = 1 / MathF.Sqrt(sigma * sigma + 1);
        return (alpha, sigma * alpha);
    }

    static float Lambda(float alpha, float sigma) => MathF.Log(alpha) - MathF.Log(sigma);

    /// <summary>dpmsolver++ works on the data prediction x0.</summary>
    Tensor ConvertModelOutput(Tensor modelOutput, Tensor sample, int i)
    {
        var (alphaT, sigmaT) = AlphaSigma(sigmaValues[i]);
        return Config.PredictionType switch
        {
            "epsilon" => (sample - sigmaT * modelOutput) / alphaT,
            "sample" => modelOutput.alias(),
            _ => alphaT * sample - sigmaT * modelOutput,
        };
    }

    public override Tensor Step(Tensor modelOutput, double timestep, Tensor sample, Generator? generator = null)
    {
        RequireTimesteps();
        using var scope = NewDisposeScope();
        int i = StepIndex ??= BeginIndex ?? IndexForTimestep(timestep);
        int n = timestepValues.Length;
        bool lowerOrderFinal = i == n - 1 && (Config.EulerAtFinal || (Config.LowerOrderFinal && n < 15) || Config.FinalSigmasType == "zero");
        bool lowerOrderSecond = i == n - 2 && Config.LowerOrderFinal && n < 15;

        var x0 = ConvertModelOutput(modelOutput, sample, i);
        modelOutputs[0]?.Dispose();
        for (int k = 0; k < modelOutputs.Length - 1; k++) modelOutputs[k] = modelOutputs[k + 1];
        modelOutputs[^1] = Keep(x0.clone());
        sample = sample.to(ScalarType.Float32);

        int order = Config.SolverOrder;
        Tensor prev;
        if (order == 1 || lowerOrderNums < 1 || lowerOrderFinal) prev = FirstOrderUpdate(x0, sample, i);
        else if (order == 2 || lowerOrderNums < 2 || lowerOrderSecond) prev = SecondOrderUpdate(sample, i);
        else prev = ThirdOrderUpdate(sample, i);
        if (lowerOrderNums < order) lowerOrderNums++;
        prev = prev.to(modelOutput.dtype);
        StepIndex = i + 1;
        return prev.MoveToOuterDisposeScope();
    }

    /// <summary>DPM-Solver++ 1 (= DDIM in x0 form).</summary>
    Tensor FirstOrderUpdate(Tensor x0, Tensor sample, int i)
    {
        var (alphaT, sigmaT) = AlphaSigma(sigmaValues[i + 1]);
        var (alphaS, sigmaS) = AlphaSigma(sigmaValues[i]);
        float h = Lambda(alphaT, sigmaT) - Lambda(alphaS, sigmaS);
        return (sigmaT / sigmaS) * sample - (alphaT * (MathF.Exp(-h) - 1.0f)) * x0;
    }

    /// <summary>Multistep DPM-Solver++ 2 (Algorithm 2 of the DPM-Solver++ paper).</summary>
    Tensor SecondOrderUpdate(Tensor sample, int i)
    {
        var (alphaT, sigmaT) = AlphaSigma(sigmaValues[i + 1]);
        var (alphaS0, sigmaS0) = AlphaSigma(sigmaValues[i]);
        var (alphaS1, sigmaS1) = AlphaSigma(sigmaValues[i - 1]);
        float lambdaT = Lambda(alphaT, sigmaT), lambdaS0 = Lambda(alphaS0, sigmaS0), lambdaS1 = Lambda(alphaS1, sigmaS1);
        var m0 = modelOutputs[^1]!; var m1 = modelOutputs[^2]!;
        float h = lambdaT - lambdaS0, h0 = lambdaS0 - lambdaS1;
        float r0 = h0 / h;
        var d0 = m0;
        var d1 = (1.0f / r0) * (m0 - m1);
        float expm = MathF.Exp(-h) - 1.0f;
        if (Config.SolverType == "midpoint")
            return (sigmaT / sigmaS0) * sample - (alphaT * expm) * d0 - 0.5f * (alphaT * expm) * d1;
        return (sigmaT / sigmaS0) * sample - (alphaT * expm) * d0 + (alphaT * (expm / h + 1.0f)) * d1;
    }

    /// <summary>Multistep DPM-Solver++ 3.</summary>
    Tensor ThirdOrderUpdate(Tensor sample, int i)
    {
        var (alphaT, sigmaT) = AlphaSigma(sigmaValues[i + 1]);
        var (alphaS0, sigmaS0) = AlphaSigma(sigmaValues[i]);
        var (alphaS1, sigmaS1) = AlphaSigma(sigmaValues[i - 1]);
        var (alphaS2, sigmaS2) = AlphaSigma(sigmaValues[i - 2]);
        float lambdaT = Lambda(alphaT, sigmaT), lambdaS0 = Lambda(alphaS0, sigmaS0);
        float lambdaS1 = Lambda(alphaS1, sigmaS1), lambdaS2 = Lambda(alphaS2, sigmaS2);
        var m0 = modelOutputs[^1]!; var m1 = modelOutputs[^2]!; var m2 = modelOutputs[^3]!;
        float h = lambdaT - lambdaS0, h0 = lambdaS0 - lambdaS1, h1 = lambdaS1 - lambdaS2;
        float r0 = h0 / h, r1 = h1 / h;
        var d10 = (1.0f / r0) * (m0 - m1);
        var d11 = (1.0f / r1) * (m1 - m2);
        var d1 = d10 + (r0 / (r0 + r1)) * (d10 - d11);
        var d2 = (1.0f / (r0 + r1)) * (d10 - d11);
        float expm = MathF.Exp(-h) - 1.0f;
        return (sigmaT / sigmaS0) * sample - (alphaT * expm) * m0 + (alphaT * (expm / h + 1.0f)) * d1
               - (alphaT * ((expm + h) / (h * h) - 0.5f)) * d2;
    }

    public override void Dispose() { ResetState(); base.Dispose(); }
}
