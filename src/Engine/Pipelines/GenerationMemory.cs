using DreamBooth.Engine.Models.Autoencoders;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Pipelines;

/// <summary>
/// What generating images on the CPU adds to host memory above the loaded model, and the check that it fits before
/// the first step: on Linux a generation that outgrows memory is ended by the OOM killer, pwsh with it, not failed.
/// The peak is the VAE decoder's (and the UNet's) work at full resolution and grows with the pixels of the images
/// decoded together. Measured on the SD-1.4 shape (docs/benchmarks.md, `generate-memory-sd14`): fp32, 0.39 GB +
/// 6.5 GB per megapixel of each batch, about 6.8 tensors of the decoder's widest full-resolution layer (256 channels
/// there) per pixel; image to image the same; bf16 0.44 GB + 3.3 GB per megapixel, half as much per pixel. The floor
/// takes 6 such tensors in the pipeline's precision and no constant, so it stays under every measured peak.
/// </summary>
public static class GenerationMemory
{
    const double FullResolutionTensors = 6;

    /// <summary>The floor in bytes for images of <paramref name="width"/> × <paramref name="height"/>, <paramref name="batch"/> decoded together.</summary>
    public static long FloorBytes(AutoencoderKLConfig vae, int width, int height, int batch, int bytesPerElement)
    {
        var c = vae.BlockOutChannels;
        // The decoder's last level works at full resolution; the level before hands it its channels (256 in SD's VAE).
        int channels = c.Length > 1 ? Math.Max(c[0], c[1]) : c[0];
        return (long)(FullResolutionTensors * channels * (double)width * height * batch * bytesPerElement);
    }

    /// <summary>Throws <see cref="HostMemoryShortfallException"/> when a CPU generation of this size cannot fit in <paramref name="availableBytes"/>.</summary>
    public static void EnsureFits(AutoencoderKLConfig vae, Device device, ScalarType dtype, int width, int height, int batch, long? availableBytes)
    {
        if (device.type != DeviceType.CPU || availableBytes is not long available) return;
        int bytes = dtype is ScalarType.Float16 or ScalarType.BFloat16 ? 2 : 4;
        long need = FloorBytes(vae, width, height, batch, bytes);
        if (need <= available) return;
        var fixes = new List<string>();
        if (batch > 1) fixes.Add($"-BatchSize 1 ({HostMemory.Gigabytes(FloorBytes(vae, width, height, 1, bytes))})");
        fixes.Add("a smaller -Width and -Height (the memory grows with the pixels)");
        if (bytes == 4) fixes.Add("-Precision bf16 (about half the memory; fast on CPUs with AVX-512)");
        fixes.Add("a GPU");
        throw new HostMemoryShortfallException(
            $"Generating {batch} image(s) of {width}×{height} at once on the CPU needs at least {HostMemory.Gigabytes(need)} of host memory beyond the loaded model, " +
            $"but {HostMemory.Gigabytes(available)} is available (memory and swap). What needs less: {string.Join("; ", fixes)}.",
            need, available);
    }
}
