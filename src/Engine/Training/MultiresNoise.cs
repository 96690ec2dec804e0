using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Training;

/// <summary>
/// kohya-ss' multi-resolution ("pyramid") noise (--multires_noise_iterations, --multires_noise_discount; Whitaker's
/// multires_noise report): the training noise gets N(0,1) noise of ever coarser sizes added, each upscaled (bilinear)
/// and weighted discount^i, the size shrinking by a random factor r ∈ [2, 4) per level, then is scaled back to unit
/// standard deviation. Low-frequency noise teaches overall brightness and contrast that plain noise hides. The random
/// factors and noises come from the run's generator.
/// </summary>
public static class MultiresNoise
{
    public static Tensor Apply(Tensor noise, int iterations, double discount, torch.Generator generator)
    {
        using var scope = torch.NewDisposeScope();
        long b = noise.shape[0], c = noise.shape[1], h = noise.shape[2], w = noise.shape[3];
        var factors = (torch.rand(iterations, dtype: ScalarType.Float64, generator: generator) * 2 + 2).data<double>().ToArray();
        var result = noise.clone();
        for (int i = 0; i < iterations; i++)
        {
            double scale = Math.Pow(factors[i], i);
            long hn = Math.Max(1, (long)(h / scale)), wn = Math.Max(1, (long)(w / scale));
            var level = torch.randn(new[] { b, c, hn, wn }, dtype: ScalarType.Float32, generator: generator).to(noise.device);
            var upscaled = nn.functional.interpolate(level, size: new[] { h, w }, mode: InterpolationMode.Bilinear, align_corners: false);
            result = result + upscaled * Math.Pow(discount, i);
            if (hn == 1 || wn == 1) break;   // the coarsest level is one pixel
        }
        return (result / result.std()).MoveToOuterDisposeScope();
    }
}
