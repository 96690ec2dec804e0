using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Training;

/// <summary>
/// The scheduled (pseudo-)Huber loss of diffusers' research script scheduled_huber_loss_training/dreambooth and
/// kohya-ss (--loss_type huber|smooth_l1, --huber_schedule, --huber_c): less weight on large errors than the squared
/// error, with its parameter c set from the batch's one timestep. l2 is the squared error (MSE) as diffusers'
/// train_dreambooth.py has it.
/// </summary>
public static class HuberLoss
{
    public static readonly string[] LossTypes = { "l2", "huber", "smooth_l1" };
    public static readonly string[] Schedules = { "snr", "exponential", "constant" };

    /// <summary>
    /// c at <paramref name="timestep"/>: constant c; exponential exp(ln(c) · t / T) (c at the last timestep, 1 at 0);
    /// snr (1 − c) / (1 + σ_t)² + c with σ_t = √((1 − ᾱ_t) / ᾱ_t) (near 1 for clean inputs, c for noisy ones).
    /// </summary>
    public static double ScheduledC(string schedule, double c, int timestep, int numTrainTimesteps, float alphaCumprod) => schedule switch
    {
        "constant" => c,
        "exponential" => Math.Exp(Math.Log(c) / numTrainTimesteps * timestep),
        "snr" => (1 - c) / Math.Pow(1 + Math.Sqrt((1.0 - alphaCumprod) / alphaCumprod), 2) + c,
        _ => throw new ArgumentException($"Unknown Huber schedule '{schedule}' (snr, exponential or constant).", nameof(schedule)),
    };

    /// <summary>Elementwise loss: l2 (p − t)², huber 2c(√((p − t)² + c²) − c), smooth_l1 2(√((p − t)² + c²) − c).</summary>
    public static Tensor Elementwise(Tensor prediction, Tensor target, string lossType, double c) => lossType switch
    {
        "l2" => nn.functional.mse_loss(prediction, target, nn.Reduction.None),
        "huber" => 2 * c * ((prediction - target).pow(2) + c * c).sqrt().sub(c),
        "smooth_l1" => 2 * ((prediction - target).pow(2) + c * c).sqrt().sub(c),
        _ => throw new ArgumentException($"Unknown loss type '{lossType}' (l2, huber or smooth_l1).", nameof(lossType)),
    };
}
