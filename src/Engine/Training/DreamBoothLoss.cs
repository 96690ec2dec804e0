using DreamBooth.Engine.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Training;

/// <summary>The losses of one DreamBooth forward pass (total is what is back-propagated).</summary>
public sealed record DreamBoothLossResult(Tensor Loss, Tensor InstanceLoss, Tensor? PriorLoss, Tensor ModelPrediction, Tensor Target, Tensor NoisyLatents);

/// <summary>
/// train_dreambooth.py's loss: noisy latents by DDPM add_noise, target = noise (epsilon) or velocity (v_prediction),
/// instance half and class half of one concatenated batch, loss = MSE(instance) + w·MSE(prior). With min-SNR (and
/// kohya-ss' debiased estimation) the instance loss is weighted per sample using the instance half of the timesteps (diffusers uses all of them, its
/// issue 5791); the prior loss is never weighted.
/// </summary>
public static class DreamBoothLoss
{
    /// <param name="unetForward">(noisy latents, timesteps, encoder hidden states) → model prediction.</param>
    public static DreamBoothLossResult Compute(
        Func<Tensor, Tensor, Tensor, Tensor> unetForward, DDPMScheduler noiseScheduler,
        Tensor latents, Tensor noise, Tensor timesteps, Tensor encoderHiddenStates,
        bool withPriorPreservation, double priorLossWeight, double? snrGamma, string lossType = "l2", double huberC = 0.1,
        Tensor? inputNoise = null, bool debiasedEstimation = false)
    {
        // The squared error as diffusers' mse_loss; the Huber losses with their (already scheduled) parameter.
        Tensor Mean(Tensor p, Tensor t) => lossType == "l2" ? nn.functional.mse_loss(p, t, nn.Reduction.Mean) : HuberLoss.Elementwise(p, t, lossType, huberC).mean();
        // Input perturbation (diffusers' --input_perturbation): the input is noised with perturbed noise, the target stays the noise.
        var noisy = noiseScheduler.AddNoise(latents, inputNoise ?? noise, timesteps);
        var pred = unetForward(noisy, timesteps, encoderHiddenStates).to(ScalarType.Float32);
        var prediction = noiseScheduler.Config.PredictionType;
        Tensor target = prediction switch
        {
            "epsilon" => noise,
            "v_prediction" => noiseScheduler.GetVelocity(latents, noise, timesteps),
            _ => throw new NotSupportedException($"Unknown prediction_type '{prediction}' in the model's scheduler config (epsilon or v_prediction)."),
        };
        target = target.to(ScalarType.Float32);

        Tensor instPred = pred, instTarget = target, instT = timesteps;
        Tensor? priorLoss = null;
        if (withPriorPreservation)
        {
            var p = pred.chunk(2, 0); var t = target.chunk(2, 0);
            instPred = p[0]; instTarget = t[0]; instT = timesteps.chunk(2, 0)[0];
            priorLoss = Mean(p[1], t[1]);
        }

        // Per-sample weights of the instance loss: min-SNR, then kohya-ss' debiased estimation (both: their product).
        Tensor? weights = snrGamma is double gamma ? MinSnr.DreamBoothWeights(noiseScheduler.AlphasCumprod, instT, gamma, prediction).to(instPred.device) : null;
        if (debiasedEstimation)
        {
            var debiased = MinSnr.DebiasedWeights(noiseScheduler.AlphasCumprod, instT, prediction).to(instPred.device);
            weights = weights is null ? debiased : weights * debiased;
        }
        Tensor instanceLoss;
        if (weights is not null)
        {
            var perSample = HuberLoss.Elementwise(instPred, instTarget, lossType, huberC)
                .mean(Enumerable.Range(1, (int)instPred.dim() - 1).Select(i => (long)i).ToArray());
            instanceLoss = (perSample * weights).mean();
        }
        else instanceLoss = Mean(instPred, instTarget);

        var loss = priorLoss is null ? instanceLoss : instanceLoss + priorLossWeight * priorLoss;
        return new DreamBoothLossResult(loss, instanceLoss, priorLoss, pred, target, noisy);
    }
}
