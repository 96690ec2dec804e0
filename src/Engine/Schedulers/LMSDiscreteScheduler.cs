using TorchSharp;
using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Schedulers;

/// <summary>
/// diffusers' LMSDiscreteScheduler (k-diffusion sample_lms): a linear multistep method of order up to 4 on the
/// ODE derivative in sigma. diffusers integrates each Lagrange basis polynomial with scipy.integrate.quad; here the
/// polynomial is integrated exactly (<see cref="LmsCoefficient"/>), which is what quad converges to.
/// </summary>
public sealed class LMSDiscreteScheduler : DiscreteSigmaScheduler
{
    public const string DiffusersClassName = "LMSDiscreteScheduler";

    public static readonly IReadOnlyList<KeyValuePair<string, JsonNode?>> Defaults = new[]
    {
        D("num_train_timesteps", 1000), D("beta_start", 0.0001), D("beta_end", 0.02), D("beta_schedule", "linear"),
        D("trained_betas", null), D("use_karras_sigmas", false), D("use_exponential_sigmas", false),
        D("use_beta_sigmas", false), D("prediction_type", "epsilon"), D("timestep_spacing", "linspace"), D("steps_offset", 0),
    };

    /// <summary>Highest multistep order (diffusers' step(order=4) default).</summary>
    public int LmsOrder { get; set; } = 4;
    readonly List<Tensor> derivatives = new();

    public LMSDiscreteScheduler(ConfigJson config, IReadOnlyDictionary<string, JsonNode?>? overrides = null)
        : this(SchedulerConfig.Resolve(config, DiffusersClassName, Defaults, overrides)) { }

    public LMSDiscreteScheduler(SchedulerConfig config) : base(config) { }

    protected override void OnSetTimesteps() => ClearDerivatives();

    void ClearDerivatives() { foreach (var d in derivatives) d.Dispose(); derivatives.Clear(); }

    /// <summary>
    /// ∫_{sigmas[t]}^{sigmas[t+1]} ∏_{k≠j} (τ − sigmas[t−k]) / (sigmas[t−j] − sigmas[t−k]) dτ for basis j = <paramref name="currentOrder"/>,
    /// integrated exactly: the basis is expanded into monomial coefficients (float64) and integrated term by term.
    /// </summary>
    public static double LmsCoefficient(IReadOnlyList<float> sigmas, int order, int t, int currentOrder)
    {
        var poly = new double[order];   // poly[m] multiplies τ^m
        poly[0] = 1;
        int degree = 0;
        for (int k = 0; k < order; k++)
        {
            if (k == currentOrder) continue;
            double root = sigmas[t - k];
            double scale = 1.0 / ((double)sigmas[t - currentOrder] - root);
            // multiply by (τ - root) * scale
            for (int m = degree + 1; m >= 0; m--)
                poly[m] = ((m > 0 ? poly[m - 1] : 0) - root * poly[m]) * scale;
            degree++;
        }
        double a = sigmas[t], b = sigmas[t + 1], integral = 0;
        for (int m = 0; m <= degree; m++)
            integral += poly[m] * (Math.Pow(b, m + 1) - Math.Pow(a, m + 1)) / (m + 1);
        return integral;
    }

    public override Tensor Step(Tensor modelOutput, double timestep, Tensor sample, Generator? generator = null)
    {
        RequireTimesteps();
        using var scope = NewDisposeScope();
        int i = EnsureStepIndex(timestep);
        float sigma = sigmaValues[i];
        var predOriginal = PredictOriginalFromSigma(modelOutput, sample, sigma, sigma);
        var derivative = (sample - predOriginal) / sigma;
        derivatives.Add(Keep(derivative.clone()));
        while (derivatives.Count > LmsOrder) { derivatives[0].Dispose(); derivatives.RemoveAt(0); }

        int order = Math.Min(i + 1, LmsOrder);
        Tensor prev = sample;
        // sum(coeff_j * derivative_{newest - j}) added to the sample, in diffusers' order (python sum starts from 0)
        Tensor? sum = null;
        for (int j = 0; j < order; j++)
        {
            var term = derivatives[derivatives.Count - 1 - j] * LmsCoefficient(sigmaValues, order, i, j);
            sum = sum is null ? term : sum + term;
        }
        prev = sample + sum!;
        StepIndex = i + 1;
        return prev.MoveToOuterDisposeScope();
    }

    public override void Dispose() { ClearDerivatives(); base.Dispose(); }
}
