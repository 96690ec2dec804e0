using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Schedulers;

/// <summary>diffusers' beta schedules, computed with the same float32 torch ops so alphas_cumprod match bit for bit.</summary>
public static class BetaSchedules
{
    /// <summary>Betas (float32, length num_train_timesteps) for the config's beta_schedule / trained_betas.</summary>
    public static Tensor Create(SchedulerConfig config)
    {
        int n = config.NumTrainTimesteps;
        var trained = config.TrainedBetas;
        Tensor betas;
        if (trained is not null) betas = tensor(trained, dtype: ScalarType.Float32);
        else betas = config.BetaSchedule switch
        {
            "linear" => linspace(config.BetaStart, config.BetaEnd, n, dtype: ScalarType.Float32),
            // latent diffusion's schedule: linear in sqrt(beta)
            "scaled_linear" => ScaledLinear(config.BetaStart, config.BetaEnd, n),
            "squaredcos_cap_v2" => BetasForAlphaBar(n),
            _ => throw config.Unsupported("beta_schedule", "use linear, scaled_linear or squaredcos_cap_v2"),
        };
        if (config.RescaleBetasZeroSnr)
        {
            var rescaled = RescaleZeroTerminalSnr(betas);
            betas.Dispose();
            betas = rescaled;
        }
        return betas;
    }

    static Tensor ScaledLinear(double start, double end, int n)
    {
        using var sqrtBetas = linspace(Math.Sqrt(start), Math.Sqrt(end), n, dtype: ScalarType.Float32);
        return sqrtBetas.pow(2);
    }

    /// <summary>Glide's cosine schedule: beta_i = min(1 - abar((i+1)/n)/abar(i/n), max_beta), in float64 then float32.</summary>
    public static Tensor BetasForAlphaBar(int n, double maxBeta = 0.999)
    {
        static double AlphaBar(double t) { var c = Math.Cos((t + 0.008) / 1.008 * Math.PI / 2); return c * c; }
        var betas = new float[n];
        for (int i = 0; i < n; i++)
            betas[i] = (float)Math.Min(1 - AlphaBar((i + 1) / (double)n) / AlphaBar(i / (double)n), maxBeta);
        return tensor(betas);
    }

    /// <summary>Lin et al. 2023 (arXiv 2305.08891) Algorithm 1: shift/scale sqrt(alphas_cumprod) so the last step has zero SNR.</summary>
    public static Tensor RescaleZeroTerminalSnr(Tensor betas)
    {
        using var scope = NewDisposeScope();
        var alphasBarSqrt = (1.0 - betas).cumprod(0).sqrt();
        var first = alphasBarSqrt[0].clone();
        var last = alphasBarSqrt[-1].clone();
        alphasBarSqrt = (alphasBarSqrt - last) * (first / (first - last));
        var alphasBar = alphasBarSqrt.pow(2);
        long n = alphasBar.shape[0];
        var alphas = cat(new[] { alphasBar.slice(0, 0, 1, 1), alphasBar.slice(0, 1, n, 1) / alphasBar.slice(0, 0, n - 1, 1) });
        return (1 - alphas).MoveToOuterDisposeScope();
    }
}
