using DreamBooth.Engine.Pipelines;

namespace DreamBooth.Engine.Training;

/// <summary>
/// The host memory a run's weights, gradients and optimizer state take, known before any model loads (the tensor sizes
/// in the safetensors headers). A floor under the run's peak, which activations add to: a run above it cannot fit, so
/// Preflight refuses it (<see cref="EnsureFits"/>) instead of letting Linux's OOM killer end the user's pwsh an hour on.
/// </summary>
public sealed record TrainingMemoryEstimate(long UnetParameters, long TextEncoderParameters, long VaeParameters, long HostBytes)
{
    /// <summary>Bytes per trained parameter in host memory: fp32 weight and gradient, plus the optimizer's two moments.</summary>
    static long TrainedBytes(DreamBoothOptions o) => 4 + 4 + (o.Use8BitAdam ? 2 : 8);

    public static TrainingMemoryEstimate For(DreamBoothOptions o, ModelSource source, bool onCpu)
    {
        var (unet, textEncoder, vae) = PipelineMemory.Count(source);
        long frozen = o.MixedPrecision == "no" ? 4 : 2;   // frozen models are held in the mixed precision
        long trained = TrainedBytes(o);
        long bytes;
        if (onCpu)
        {
            // LoRA's adapters are a fraction of a percent of the model: left out of a floor.
            long unetBytes = unet * (o.LoRA ? frozen : trained);
            // A frozen text encoder is freed once the prompts are encoded, unless validation needs it.
            long textEncoderBytes = o.TrainTextEncoder && !o.LoRA ? textEncoder * trained
                : o.TrainTextEncoder || o.HasValidation ? textEncoder * frozen : 0;
            bytes = unetBytes + textEncoderBytes + vae * frozen;
        }
        else
        {
            // On a GPU the host holds what offloading moves there: the moments, the gradients' copies and float32 master weights.
            long trainedParameters = o.LoRA ? 0 : unet + (o.TrainTextEncoder ? textEncoder : 0);
            bytes = o.OffloadOptimizerState ? trainedParameters * ((o.Use8BitAdam ? 2 : 8) + 4 + 4) : 0;
        }
        return new TrainingMemoryEstimate(unet, textEncoder, vae, bytes);
    }

    /// <summary>Throws <see cref="HostMemoryShortfallException"/> when the floor exceeds the memory available (where the OS says).</summary>
    public static void EnsureFits(DreamBoothOptions o, ModelSource source, bool onCpu, long? availableBytes)
    {
        if (availableBytes is not long available) return;
        var need = For(o, source, onCpu);
        if (need.HostBytes <= available) return;
        var lower = new List<string>();
        if (!o.LoRA)
        {
            var lora = For(o with { LoRA = true }, source, onCpu).HostBytes;
            lower.Add($"-LoRA trains adapters only ({HostMemory.Gigabytes(lora)})");
            if (!o.Use8BitAdam) lower.Add($"-Use8BitAdam keeps the optimizer's moments in 8 bits ({HostMemory.Gigabytes(For(o with { Use8BitAdam = true }, source, onCpu).HostBytes)})");
            if (o.TrainTextEncoder) lower.Add($"without -TrainTextEncoder: {HostMemory.Gigabytes(For(o with { TrainTextEncoder = false }, source, onCpu).HostBytes)}");
        }
        if (o.MixedPrecision == "no" && onCpu) lower.Add("-MixedPrecision bf16 holds the frozen models in 16 bits");
        string where = onCpu ? "Training on the CPU" : "Training with -OffloadOptimizerState";
        throw new HostMemoryShortfallException(
            $"{where} needs at least {HostMemory.Gigabytes(need.HostBytes)} of host memory for the weights, gradients and optimizer state alone " +
            $"(UNet {need.UnetParameters / 1e6:F0} M, text encoder {need.TextEncoderParameters / 1e6:F0} M, VAE {need.VaeParameters / 1e6:F0} M parameters; " +
            $"activations come on top), but {HostMemory.Gigabytes(available)} is available (memory and swap). " +
            (lower.Count > 0 ? "What needs less: " + string.Join("; ", lower) + ". " : "") +
            "Or free memory by closing other programs, or train on a GPU.",
            need.HostBytes, available);
    }
}
