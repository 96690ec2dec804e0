using DreamBooth.Engine.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Pipelines;

/// <summary>
/// The parameters of a pipeline's three models, counted from the safetensors headers before anything loads, and the
/// check that their weights fit in host memory when they load onto the CPU (<see cref="HostMemory"/>): on Linux a
/// load that outgrows it ends the process, pwsh included, instead of failing.
/// </summary>
public static class PipelineMemory
{
    public sealed record ParameterCounts(long Unet, long TextEncoder, long Vae)
    {
        public long Total => Unet + TextEncoder + Vae;
    }

    public static ParameterCounts Count(ModelSource source)
    {
        var folder = DiffusersPipelineFolder.Open(source.BaseModel);
        return new ParameterCounts(
            Parameters(source.UnetDirectory ?? folder.ComponentDirectory("unet")),
            Parameters(source.TextEncoderDirectory ?? folder.ComponentDirectory("text_encoder")),
            Parameters(folder.ComponentDirectory("vae")));
    }

    /// <summary>Throws <see cref="HostMemoryShortfallException"/> when loading onto the CPU in <paramref name="dtype"/> cannot fit.</summary>
    public static void EnsureFits(ModelSource source, ScalarType dtype, Device device, long? availableBytes)
    {
        if (device.type != DeviceType.CPU || availableBytes is not long available) return;
        long need = Count(source).Total * (dtype is ScalarType.Float32 ? 4 : 2);
        if (need <= available) return;
        int cached = PipelineCache.Entries().Count;
        throw new HostMemoryShortfallException(
            $"Loading '{source.Path}' onto the CPU needs at least {HostMemory.Gigabytes(need)} of host memory for its weights ({DeviceSelection.PrecisionName(dtype)}), " +
            $"but {HostMemory.Gigabytes(available)} is available (memory and swap). " +
            (cached > 0 ? $"Clear-DreamBoothModelCache frees the {cached} pipeline(s) kept loaded. " : "") +
            (dtype is ScalarType.Float32 ? "-Precision bf16 halves it. " : "") +
            "Or free memory by closing other programs, or use a GPU.",
            need, available);
    }

    static long Parameters(string componentDir)
    {
        using var weights = DiffusersPipelineFolder.OpenWeights(componentDir);
        long total = 0;
        foreach (var key in weights.Keys) total += weights[key].Shape.Aggregate(1L, (a, b) => a * b);
        return total;
    }
}
