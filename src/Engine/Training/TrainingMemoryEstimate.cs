using DreamBooth.Engine.Pipelines;

namespace DreamBooth.Engine.Training;

/// <summary>
/// The host memory a run's weights, gradients and optimizer state take, known before any model loads (the tensor sizes
/// in the safetensors headers). A floor under the run's peak, which activations add to: a run above it cannot fit, so
/// Preflight refuses it (<see cref="EnsureFits"/>) instead of letting Linux's OOM killer end the user's pwsh an hour on.
/// </summary>
public sealed record TrainingMemoryEstimate(PipelineMemory.ParameterCounts Parameters, long HostBytes)
{
    /// <summary>Bytes per parameter of the optimizer's two moments: float32, or 8-bit codes.</summary>
    static long MomentBytes(DreamBoothOptions o) => o.Use8BitAdam ? 2 : 8;

    /// <param name="parameters">the pipeline's parameter counts (<see cref="PipelineMemory.Count"/>)</param>
    public static TrainingMemoryEstimate For(DreamBoothOptions o, PipelineMemory.ParameterCounts parameters, bool onCpu)
    {
        var (unet, textEncoder, vae) = parameters;
        long frozen = o.MixedPrecision == "no" ? 4 : 2;   // frozen models are held in the mixed precision
        long trained = 4 + 4 + MomentBytes(o);            // a trained parameter: float32 weight and gradient, and the moments
        long bytes;
        if (onCpu)
        {
            // LoRA's adapters are a fraction of a percent of the model: left out of a floor.
            long unetBytes = unet * (o.LoRA ? frozen : trained);
            // A frozen text encoder is freed once the prompts are encoded, unless validation or changing captions need it.
            long textEncoderBytes = o.TrainTextEncoder && !o.LoRA ? textEncoder * trained
                : o.TrainTextEncoder || o.HasValidation || CaptionAugmentation.For(o).IsActive ? textEncoder * frozen : 0;
            bytes = unetBytes + textEncoderBytes + vae * frozen;
        }
        else
        {
            // On a GPU the host holds what offloading moves there: the moments, the gradients' copies and float32 master weights.
            long trainedParameters = o.LoRA ? 0 : unet + (o.TrainTextEncoder ? textEncoder : 0);
            bytes = o.OffloadOptimizerState ? trainedParameters * (MomentBytes(o) + 4 + 4) : 0;
        }
        return new TrainingMemoryEstimate(parameters, bytes);
    }

    /// <summary>Throws <see cref="HostMemoryShortfallException"/> when the floor exceeds the memory available (where the OS says).</summary>
    public static void EnsureFits(DreamBoothOptions o, PipelineMemory.ParameterCounts parameters, bool onCpu, long? availableBytes)
    {
        if (availableBytes is not long available) return;
        var need = For(o, parameters, onCpu);
        if (need.HostBytes <= available) return;
        var lower = new List<string>();
        if (!o.LoRA)
        {
            var lora = For(o with { LoRA = true }, parameters, onCpu).HostBytes;
            lower.Add($"-LoRA trains adapters only ({HostMemory.Gigabytes(lora)})");
            if (!o.Use8BitAdam) lower.Add($"-Use8BitAdam keeps the optimizer's moments in 8 bits ({HostMemory.Gigabytes(For(o with { Use8BitAdam = true }, parameters, onCpu).HostBytes)})");
            if (o.TrainTextEncoder) lower.Add($"without -TrainTextEncoder: {HostMemory.Gigabytes(For(o with { TrainTextEncoder = false }, parameters, onCpu).HostBytes)}");
        }
        if (o.MixedPrecision == "no" && onCpu) lower.Add("-MixedPrecision bf16 holds the frozen models in 16 bits");
        string where = onCpu ? "Training on the CPU" : "Training with -OffloadOptimizerState";
        throw new HostMemoryShortfallException(
            $"{where} needs at least {HostMemory.Gigabytes(need.HostBytes)} of host memory for the weights, gradients and optimizer state alone " +
            $"(UNet {parameters.Unet / 1e6:F0} M, text encoder {parameters.TextEncoder / 1e6:F0} M, VAE {parameters.Vae / 1e6:F0} M parameters; " +
            $"activations come on top), but {HostMemory.Gigabytes(available)} is available (memory and swap). " +
            (lower.Count > 0 ? "What needs less: " + string.Join("; ", lower) + ". " : "") +
            "Or free memory by closing other programs, or train on a GPU.",
            need.HostBytes, available);
    }
}
