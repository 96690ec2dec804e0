using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.IO;

/// <summary>
/// The image transforms of diffusers' DreamBooth dataset (torchvision on PIL images):
/// <c>Resize(resolution, BILINEAR)</c> → <c>CenterCrop(resolution)</c> or <c>RandomCrop(resolution)</c> → <c>ToTensor()</c>
/// → <c>Normalize([0.5], [0.5])</c>, plus the optional horizontal flip of diffusers' other training scripts (applied after
/// the resize and before the crop, as there). Resizing is PIL's own bilinear resampler re-implemented (antialiased
/// triangle filter, 22-bit fixed-point coefficients, 8-bit rounding between the horizontal and vertical pass), so pixels
/// equal PIL's bit for bit; crop offsets use torchvision's formulas, and random ones the same generator draws.
/// </summary>
public static class ImageTransforms
{
    /// <summary>torchvision's size for <c>Resize(int)</c>: shorter side = <paramref name="resolution"/>, longer = int(resolution · long / short).</summary>
    public static (int Width, int Height) ResizedSize(int width, int height, int resolution)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"An image of {width}x{height} pixels cannot be resized.");
        if (resolution <= 0) throw new ArgumentOutOfRangeException(nameof(resolution), resolution, "The resolution must be positive.");
        bool portrait = width <= height;
        int shortSide = portrait ? width : height, longSide = portrait ? height : width;
        int newLong = (int)(resolution * (double)longSide / shortSide);   // Python: int(size * long / short)
        return portrait ? (resolution, newLong) : (newLong, resolution);
    }

    /// <summary>Resizes so the shorter side equals <paramref name="resolution"/> (PIL bilinear, as torchvision's Resize).</summary>
    public static Image<Rgb24> ResizeShorterSide(Image<Rgb24> image, int resolution)
    {
        var (w, h) = ResizedSize(image.Width, image.Height, resolution);
        return PilBilinear.Resize(image, w, h);
    }

    /// <summary>torchvision <c>CenterCrop</c>: top = round((h − size) / 2), left = round((w − size) / 2), ties to even as Python's round.</summary>
    public static (int Top, int Left) CenterCropOffsets(int height, int width, int size) => CenterCropOffsets(height, width, size, size);

    /// <summary><see cref="CenterCropOffsets(int, int, int)"/> for a <paramref name="cropWidth"/>×<paramref name="cropHeight"/> rectangle (an aspect-ratio bucket).</summary>
    public static (int Top, int Left) CenterCropOffsets(int height, int width, int cropHeight, int cropWidth)
    {
        if (cropHeight <= 0 || cropWidth <= 0 || cropHeight > height || cropWidth > width)
            throw new ArgumentException($"A {cropWidth}x{cropHeight} crop does not fit a {width}x{height} image.");
        return ((int)Math.Round((height - cropHeight) / 2.0, MidpointRounding.ToEven), (int)Math.Round((width - cropWidth) / 2.0, MidpointRounding.ToEven));
    }

    /// <summary>
    /// torchvision <c>RandomCrop.get_params</c>: no draw when the image already has the crop size, else
    /// top = randint(0, h − size + 1), then left = randint(0, w − size + 1), from <paramref name="generator"/> (torch's
    /// default CPU generator when null, as torchvision). Store the offsets to replay an epoch exactly on resume.
    /// </summary>
    public static (int Top, int Left) RandomCropOffsets(int height, int width, int size, torch.Generator? generator = null)
    {
        CheckCrop(height, width, size);
        if (height == size && width == size) return (0, 0);
        using var top = torch.randint(0, height - size + 1, new long[] { 1 }, generator: generator);
        using var left = torch.randint(0, width - size + 1, new long[] { 1 }, generator: generator);
        return ((int)top.item<long>(), (int)left.item<long>());
    }

    static void CheckCrop(int height, int width, int size)
    {
        if (size <= 0 || size > height || size > width)
            throw new ArgumentException($"A {size}x{size} crop does not fit a {width}x{height} image.");
    }

    /// <summary>The <paramref name="size"/>×<paramref name="size"/> square at (top, left).</summary>
    public static Image<Rgb24> Crop(Image<Rgb24> image, int top, int left, int size) => Crop(image, top, left, size, size);

    /// <summary>The <paramref name="width"/>×<paramref name="height"/> rectangle at (top, left).</summary>
    public static Image<Rgb24> Crop(Image<Rgb24> image, int top, int left, int width, int height)
    {
        if (top < 0 || left < 0 || top + height > image.Height || left + width > image.Width)
            throw new ArgumentException($"A {width}x{height} crop at top {top}, left {left} does not fit a {image.Width}x{image.Height} image.");
        return image.Clone(x => x.Crop(new Rectangle(left, top, width, height)));
    }

    /// <summary>
    /// An aspect-ratio bucket's pipeline for one image: resize to <paramref name="resized"/> (PIL bilinear), optional
    /// horizontal flip, crop the bucket's <paramref name="width"/>×<paramref name="height"/> at (top, left), normalise.
    /// </summary>
    public static Tensor BucketTransform(Image<Rgb24> image, (int Width, int Height) resized, int top, int left, int width, int height, bool flip)
    {
        using var scaled = PilBilinear.Resize(image, resized.Width, resized.Height);
        using var flipped = flip ? FlipHorizontal(scaled) : null;
        using var cropped = Crop(flipped ?? scaled, top, left, width, height);
        return ToNormalizedTensor(cropped);
    }

    public static Image<Rgb24> FlipHorizontal(Image<Rgb24> image) => image.Clone(x => x.Flip(FlipMode.Horizontal));

    /// <summary>torchvision <c>ToTensor()</c> then <c>Normalize([0.5], [0.5])</c>: [3, H, W] float32 in [−1, 1], same float ops.</summary>
    public static Tensor ToNormalizedTensor(Image<Rgb24> image)
    {
        using var scope = torch.NewDisposeScope();
        var x = ImageTensor.FromImage(image);        // /255 as ToTensor
        return x.sub_(0.5).div_(0.5).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The whole DreamBooth pipeline for one image: resize (shorter side = <paramref name="resolution"/>), optional
    /// horizontal flip, crop at <paramref name="cropOffsets"/> (null: center crop; for a random crop pass
    /// <see cref="RandomCropOffsets"/> of <see cref="ResizedSize"/>), normalise. Returns [3, resolution, resolution] in [−1, 1].
    /// </summary>
    public static Tensor DreamBoothTransform(Image<Rgb24> image, int resolution, (int Top, int Left)? cropOffsets = null, bool flip = false)
    {
        using var resized = ResizeShorterSide(image, resolution);
        using var flipped = flip ? FlipHorizontal(resized) : null;
        var src = flipped ?? resized;
        var (top, left) = cropOffsets ?? CenterCropOffsets(src.Height, src.Width, resolution);
        using var cropped = Crop(src, top, left, resolution);
        return ToNormalizedTensor(cropped);
    }
}
