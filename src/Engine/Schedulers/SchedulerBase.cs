using TorchSharp;
using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Schedulers;

/// <summary>
/// What every diffusers scheduler offers a denoising loop: set_timesteps, timesteps, init_noise_sigma,
/// scale_model_input and step (returning prev_sample). Multistep schedulers keep their state (step index, history)
/// between calls exactly like diffusers, so call <see cref="SetTimesteps"/> before each new loop.
/// Tensors the scheduler keeps are owned by it (detached from dispose scopes); dispose the scheduler to free them.
/// </summary>
public abstract class SchedulerBase : IDisposable
{
    public SchedulerConfig Config { get; }
    public string ClassName => Config.ClassName;
    /// <summary>diffusers' class attribute <c>order</c> (model evaluations per step); 1 for all schedulers here.</summary>
    public virtual int Order => 1;

    /// <summary>float32 [num_train_timesteps].</summary>
    public Tensor Betas { get; }
    public Tensor Alphas { get; }
    public Tensor AlphasCumprod { get; }
    protected readonly float[] alphasCumprod;

    /// <summary>After <see cref="SetTimesteps"/>: int64 (DDPM/DDIM/PNDM/DPM-Solver) or float32 (Euler/EulerA/LMS), like diffusers.</summary>
    public Tensor Timesteps { get; private set; }
    protected double[] timestepValues = Array.Empty<double>();
    /// <summary>float32 [N+1] for sigma-based schedulers, else null.</summary>
    public Tensor? Sigmas { get; private set; }
    protected float[] sigmaValues = Array.Empty<float>();
    public virtual double InitNoiseSigma => 1.0;
    public int? NumInferenceSteps { get; protected set; }

    protected SchedulerBase(SchedulerConfig config)
    {
        Config = config;
        if (config.Thresholding) throw config.Unsupported("thresholding", "dynamic thresholding is for pixel-space models (Imagen/DeepFloyd), not Stable Diffusion latents");
        var p = config.PredictionType;
        if (p is not ("epsilon" or "v_prediction" or "sample")) throw config.Unsupported("prediction_type", "use epsilon, v_prediction or sample");
        using var scope = NewDisposeScope();   // the schedule's temporaries; what is kept is detached from it
        Betas = BetaSchedules.Create(config).DetachFromDisposeScope();
        Alphas = (1.0 - Betas).DetachFromDisposeScope();
        AlphasCumprod = Alphas.cumprod(0).DetachFromDisposeScope();
        alphasCumprod = AlphasCumprod.data<float>().ToArray();
        Timesteps = torch.arange(config.NumTrainTimesteps - 1, -1, -1, dtype: ScalarType.Int64).DetachFromDisposeScope();
    }

    public abstract void SetTimesteps(int numInferenceSteps);

    public Tensor ScaleModelInput(Tensor sample, Tensor timestep) => ScaleModelInput(sample, timestep.to(ScalarType.Float64).item<double>());
    /// <summary>Scales the denoiser input (Euler family: x / sqrt(sigma^2+1)); identity for the others.</summary>
    public virtual Tensor ScaleModelInput(Tensor sample, double timestep) => sample;

    public Tensor Step(Tensor modelOutput, Tensor timestep, Tensor sample, Generator? generator = null)
        => Step(modelOutput, timestep.to(ScalarType.Float64).item<double>(), sample, generator);
    /// <summary>One denoising step; returns prev_sample. <paramref name="generator"/> feeds the stochastic schedulers (null = global CPU generator).</summary>
    public abstract Tensor Step(Tensor modelOutput, double timestep, Tensor sample, Generator? generator = null);

    /// <summary>
    /// diffusers' add_noise: x0 noised to a batch of timesteps (int64 for the alpha-based schedulers): sqrt(abar_t) x0 +
    /// sqrt(1-abar_t) noise here, the sigma of the step for the sigma-based ones. Training's noisy_model_input and the
    /// image-to-image pipeline's start.
    /// </summary>
    public virtual Tensor AddNoise(Tensor original, Tensor noise, Tensor timesteps) => AddNoiseWithAlphas(original, noise, timesteps);

    /// <summary>
    /// diffusers' set_begin_index, which image-to-image calls after set_timesteps: the loop starts at this index of
    /// <see cref="Timesteps"/>. Only schedulers that keep a step index have one; the others find their place from the
    /// timestep itself.
    /// </summary>
    public virtual void SetBeginIndex(int index) { }

    protected void SetSchedule(Tensor timesteps, double[] values, float[]? sigmas)
    {
        Timesteps.Dispose();
        Timesteps = timesteps.DetachFromDisposeScope();
        timestepValues = values;
        Sigmas?.Dispose();
        Sigmas = sigmas is null ? null : torch.tensor(sigmas).DetachFromDisposeScope();
        sigmaValues = sigmas ?? Array.Empty<float>();
    }

    protected void RequireTimesteps()
    {
        if (NumInferenceSteps is null) throw new InvalidOperationException($"{ClassName}: call SetTimesteps before Step.");
    }

    /// <summary>Indices i with timesteps[i] == t.</summary>
    protected List<int> IndicesOf(double timestep)
    {
        var r = new List<int>();
        for (int i = 0; i < timestepValues.Length; i++) if (timestepValues[i] == timestep) r.Add(i);
        return r;
    }

    /// <summary>Leading/linspace/trailing integer timesteps shared by DDPM and DDIM (descending).</summary>
    protected long[] SpacedTimesteps(int n)
    {
        int T = Config.NumTrainTimesteps;
        switch (Config.TimestepSpacing)
        {
            case "linspace":
                return NumpyMath.Linspace(0, T - 1, n).Select(x => (long)NumpyMath.Round(x)).Reverse().ToArray();
            case "leading":
                int ratio = T / n;
                return Enumerable.Range(0, n).Select(i => (long)i * ratio + Config.StepsOffset).Reverse().ToArray();
            case "trailing":
                double r = (double)T / n;
                return NumpyMath.Arange(T, 0, -r).Select(x => (long)NumpyMath.Round(x) - 1).ToArray();
            default:
                throw Config.Unsupported("timestep_spacing", "use leading, linspace or trailing");
        }
    }

    /// <summary>Float timesteps of the Euler family for leading/linspace/trailing (descending; float32 like numpy there).</summary>
    protected float[] SpacedFloatTimesteps(int n)
    {
        int T = Config.NumTrainTimesteps;
        return Config.TimestepSpacing switch
        {
            "linspace" => NumpyMath.Linspace(0, T - 1, n).Select(x => (float)x).Reverse().ToArray(),
            "leading" => Enumerable.Range(0, n).Select(i => (float)((double)i * (T / n)) + Config.StepsOffset).Reverse().ToArray(),
            "trailing" => NumpyMath.Arange(T, 0, -(double)T / n).Select(x => (float)NumpyMath.Round(x) - 1).ToArray(),
            _ => throw Config.Unsupported("timestep_spacing", "use leading, linspace or trailing"),
        };
    }

    /// <summary>
    /// sqrt((1 - alphas_cumprod) / alphas_cumprod) in float32, ascending in t. Square roots are taken here, correctly
    /// rounded, because TorchSharp's libtorch 2.10 CPU sqrt is 1 ulp off for some inputs where PyTorch's is exact.
    /// </summary>
    protected float[] TrainingSigmas() => alphasCumprod.Select(a => MathF.Sqrt((1 - a) / a)).ToArray();

    /// <summary>x0 = (x - sqrt(1-abar) eps) / sqrt(abar), etc., for the alphas_cumprod parameterisation.</summary>
    protected Tensor PredictOriginal(Tensor modelOutput, Tensor sample, float alphaProdT)
    {
        float betaProdT = 1 - alphaProdT;
        return Config.PredictionType switch
        {
            "epsilon" => (sample - MathF.Sqrt(betaProdT) * modelOutput) / MathF.Sqrt(alphaProdT),
            "sample" => modelOutput.alias(),
            _ => MathF.Sqrt(alphaProdT) * sample - MathF.Sqrt(betaProdT) * modelOutput,
        };
    }

    protected Tensor ClipOriginal(Tensor predOriginal)
        => Config.ClipSample ? predOriginal.clamp(-Config.ClipSampleRange, Config.ClipSampleRange) : predOriginal;

    /// <summary>Forward diffusion q(x_t|x_0): sqrt(abar_t) x0 + sqrt(1-abar_t) noise, per-batch timesteps (int64).</summary>
    protected Tensor AddNoiseWithAlphas(Tensor original, Tensor noise, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var (a, s) = AlphaFactors(original, timesteps);
        return (a * original + s * noise).MoveToOuterDisposeScope();
    }

    /// <summary>v-prediction target: sqrt(abar_t) noise - sqrt(1-abar_t) x0.</summary>
    protected Tensor VelocityWithAlphas(Tensor sample, Tensor noise, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var (a, s) = AlphaFactors(sample, timesteps);
        return (a * noise - s * sample).MoveToOuterDisposeScope();
    }

    /// <summary>sqrt(abar_t), sqrt(1 - abar_t) shaped [B,1,1,...]; float32 roots taken in C# (correctly rounded, as in PyTorch).</summary>
    (Tensor sqrtAlpha, Tensor sqrtOneMinusAlpha) AlphaFactors(Tensor like, Tensor timesteps)
    {
        var shape = new long[Math.Max(1, (int)like.dim())];
        Array.Fill(shape, 1L);
        shape[0] = -1;
        Tensor sqrtA, sqrtB;
        if (like.dtype == ScalarType.Float32)
        {
            var ts = timesteps.cpu().to(ScalarType.Int64).flatten().data<long>().ToArray();
            sqrtA = torch.tensor(ts.Select(t => MathF.Sqrt(alphasCumprod[t])).ToArray()).to(like.device);
            sqrtB = torch.tensor(ts.Select(t => MathF.Sqrt(1 - alphasCumprod[t])).ToArray()).to(like.device);
        }
        else
        {
            var ac = AlphasCumprod.to(like.device).to(like.dtype)[timesteps.to(like.device).to(ScalarType.Int64)];
            sqrtA = ac.pow(0.5).flatten();
            sqrtB = (1 - ac).pow(0.5).flatten();
        }
        return (sqrtA.reshape(shape), sqrtB.reshape(shape));
    }

    protected static Tensor Keep(Tensor t) => t.DetachFromDisposeScope();

    public virtual void Dispose()
    {
        Betas.Dispose(); Alphas.Dispose(); AlphasCumprod.Dispose(); Timesteps.Dispose(); Sigmas?.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>An ordered defaults list helper for the subclasses' __init__ signatures.</summary>
    protected static KeyValuePair<string, JsonNode?> D(string key, JsonNode? value) => new(key, value);
}
