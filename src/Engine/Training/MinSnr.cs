using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Training;

/// <summary>Min-SNR loss weighting (Hang et al. 2023) as in diffusers' training scripts (<c>training_utils.compute_snr</c>).</summary>
public static class MinSnr
{
    /// <summary>
    /// SNR(t) = (√ᾱ_t / √(1−ᾱ_t))², computed from the square roots as diffusers does (so rounding matches).
    /// Returns float32 on the device of <paramref name="timesteps"/>, shape = timesteps.
    /// </summary>
    public static Tensor ComputeSnr(Tensor alphasCumprod, Tensor timesteps)
    {
        using var scope = torch.NewDisposeScope();
        var ac = alphasCumprod.to(timesteps.device);
        var sqrtAlpha = ac.pow(0.5);
        var sqrtOneMinusAlpha = (1.0 - ac).pow(0.5);
        var idx = timesteps.to(ScalarType.Int64);
        var alpha = sqrtAlpha.index_select(0, idx.flatten()).reshape(timesteps.shape).to(ScalarType.Float32);
        var sigma = sqrtOneMinusAlpha.index_select(0, idx.flatten()).reshape(timesteps.shape).to(ScalarType.Float32);
        return (alpha / sigma).pow(2).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Per-sample loss weights: epsilon → min(snr, γ)/snr; v_prediction → min(snr, γ)/(snr+1)
    /// (diffusers train_dreambooth: <c>mse_loss_weights</c>; multiply the per-sample mean MSE by these).
    /// </summary>
    public static Tensor Weights(Tensor alphasCumprod, Tensor timesteps, double gamma, string predictionType)
    {
        ArgumentNullException.ThrowIfNull(predictionType);
        using var scope = torch.NewDisposeScope();
        var snr = ComputeSnr(alphasCumprod, timesteps);
        var clipped = torch.minimum(snr, torch.full_like(snr, gamma));
        Tensor w = predictionType switch
        {
            "epsilon" => clipped / snr,
            "v_prediction" => clipped / (snr + 1),
            _ => throw new ArgumentException($"Min-SNR weighting supports prediction types epsilon and v_prediction, not '{predictionType}'.", nameof(predictionType)),
        };
        return w.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// kohya-ss' debiased estimation loss (--debiased_estimation_loss, Yu et al. 2024): per-sample weights 1/√SNR
    /// (1/(SNR+1) for v_prediction), SNR capped at 1000 because it is infinite at timestep 0.
    /// </summary>
    public static Tensor DebiasedWeights(Tensor alphasCumprod, Tensor timesteps, string predictionType)
    {
        using var scope = torch.NewDisposeScope();
        var snr = ComputeSnr(alphasCumprod, timesteps);
        snr = torch.minimum(snr, torch.full_like(snr, 1000.0));
        return (predictionType == "v_prediction" ? 1 / (snr + 1) : 1 / snr.sqrt()).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The variant in diffusers' <c>examples/dreambooth/train_dreambooth.py</c>: base = min(snr, γ)/snr for every
    /// prediction type, and v_prediction uses base + 1 ("floored to an SNR weight of one"), not min(snr, γ)/(snr+1).
    /// </summary>
    public static Tensor DreamBoothWeights(Tensor alphasCumprod, Tensor timesteps, double gamma, string predictionType)
    {
        ArgumentNullException.ThrowIfNull(predictionType);
        if (predictionType is not ("epsilon" or "v_prediction" or "sample"))
            throw new ArgumentException($"Min-SNR weighting supports prediction types epsilon, v_prediction and sample, not '{predictionType}'.", nameof(predictionType));
        using var scope = torch.NewDisposeScope();
        var snr = ComputeSnr(alphasCumprod, timesteps);
        var baseWeight = torch.minimum(snr, torch.full_like(snr, gamma)) / snr;
        return (predictionType == "v_prediction" ? baseWeight + 1 : baseWeight).MoveToOuterDisposeScope();
    }
}
