using DreamBooth.Engine.IO;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Pipelines;

/// <summary>
/// The starting image of image-to-image, as diffusers' VaeImageProcessor.preprocess prepares it: RGB (EXIF orientation
/// applied), resized (Lanczos) to the asked size, or kept at its own size rounded down to a multiple of 8 when none is
/// asked, then [1, 3, H, W] in [−1, 1]. diffusers rounds to the VAE's scale factor, 8 for Stable Diffusion.
/// </summary>
public static class InitImage
{
    /// <summary>The output size for an init image of <paramref name="width"/> × <paramref name="height"/> pixels.</summary>
    public static (int Width, int Height) SizeFor(int width, int height, int? askedWidth, int? askedHeight, int vaeScaleFactor)
    {
        int multiple = Math.Max(8, vaeScaleFactor);
        int w = askedWidth ?? width - width % multiple, h = askedHeight ?? height - height % multiple;
        if (w < multiple || h < multiple)
            throw new ArgumentException($"The init image is {width}×{height} pixels; it must be at least {multiple}×{multiple}.");
        return (w, h);
    }

    /// <summary>The output size for the init image at <paramref name="path"/> (read, not yet encoded: the memory check comes first).</summary>
    public static (int Width, int Height) SizeOf(string path, int? width, int? height, int vaeScaleFactor)
    {
        if (width is int w && height is int h) return SizeFor(w, h, w, h, vaeScaleFactor);
        using var image = ImageLoader.LoadRgb(path);   // EXIF orientation applied: the size as the pixels will be
        return SizeFor(image.Width, image.Height, width, height, vaeScaleFactor);
    }

    /// <summary>Loads <paramref name="path"/> at the size <see cref="SizeFor"/> gives: [1, 3, H, W] float32 in [−1, 1] on the CPU.</summary>
    public static Tensor Load(string path, int? width, int? height, int vaeScaleFactor)
    {
        using var image = ImageLoader.LoadRgb(path);
        var (w, h) = SizeFor(image.Width, image.Height, width, height, vaeScaleFactor);
        using var resized = w == image.Width && h == image.Height ? null : image.Clone(x => x.Resize(w, h, KnownResamplers.Lanczos3));
        using var scope = torch.NewDisposeScope();
        return ImageTensor.FromImage(resized ?? image).mul_(2).sub_(1).unsqueeze(0).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// An inpainting mask as diffusers' mask processor prepares it: resized (Lanczos) to the init image's size, PIL's
    /// grey conversion (L = (19595 R + 38470 G + 7471 B + 2^15) >> 16), / 255, then binarised at 0.5: [1, 1, H, W] of 0
    /// (keep) and 1 (paint anew) on the CPU.
    /// </summary>
    public static Tensor LoadMask(string path, int width, int height)
    {
        using var image = ImageLoader.LoadRgb(path);
        using var resized = width == image.Width && height == image.Height ? null : image.Clone(x => x.Resize(width, height, KnownResamplers.Lanczos3));
        var source = resized ?? image;
        var bytes = new byte[width * height * 3];
        source.CopyPixelDataTo(bytes);
        var mask = new float[width * height];
        for (int i = 0; i < mask.Length; i++)
        {
            int grey = (bytes[3 * i] * 19595 + bytes[3 * i + 1] * 38470 + bytes[3 * i + 2] * 7471 + 0x8000) >> 16;
            mask[i] = grey / 255f < 0.5f ? 0f : 1f;
        }
        return torch.tensor(mask, new long[] { 1, 1, height, width });
    }

    /// <summary>
    /// diffusers' get_timesteps: how many of <paramref name="steps"/> the image skips, t_start = steps − int(steps ·
    /// strength); the loop runs the remaining timesteps from the one whose noise level the image is brought to.
    /// </summary>
    public static int SkippedSteps(int steps, double strength) => Math.Max(steps - Math.Min((int)(steps * strength), steps), 0);
}
