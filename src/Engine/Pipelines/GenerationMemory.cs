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
/// there) per pixel; image to image the same. The floor takes 6 such tensors and no constant, so it stays under
/// every measured peak. Only fp32 is checked: in bf16 the same 1024² image added 1.38 GB, not half of fp32's 7.19 GB,
/// so a floor scaled from fp32 would refuse generations that fit.
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
        if (device.type != DeviceType.CPU || dtype != ScalarType.Float32 || availableBytes is not long available) return;
        long need = FloorBytes(vae, width, height, batch, 4);
        if (need <= available) return;
        var fixes = new List<string>();
        if (batch > 1) fixes.Add($"-BatchSize 1 ({HostMemory.Gigabytes(FloorBytes(vae, width, height, 1, 4))})");
        fixes.Add("a smaller -Width and -Height (the memory grows with the pixels)");
        fixes.Add("-Precision bf16 (1.4 GB instead of 7.2 GB for a 1024×1024 SD-1.x image)");
        fixes.Add("a GPU");
        throw new HostMemoryShortfallException(
            $"Generating {batch} image(s) of {width}×{height} at once on the CPU needs at least {HostMemory.Gigabytes(need)} of host memory beyond the loaded model, " +
            $"but {HostMemory.Gigabytes(available)} is available (memory and swap). What needs less: {string.Join("; ", fixes)}.",
            need, available);
    }
}
