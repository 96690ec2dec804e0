using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.IO;

/// <summary>Conversions between RGB images and [3, H, W] float tensors in [0, 1].</summary>
public static class ImageTensor
{
    /// <summary>torchvision <c>ToTensor()</c>: [3, H, W] float32, byte / 255.</summary>
    public static Tensor FromImage(Image<Rgb24> image)
    {
        var bytes = new byte[image.Width * image.Height * 3];
        image.CopyPixelDataTo(bytes);
        using var scope = torch.NewDisposeScope();
        var hwc = torch.tensor(bytes, new long[] { image.Height, image.Width, 3 });
        return hwc.permute(2, 0, 1).contiguous().to(ScalarType.Float32).div_(255).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// An image from a float tensor in [0, 1] (clamped), [3, H, W], [1, 3, H, W] or [H, W, 3] (a [3, H, 3] tensor is read as
    /// channels-first), rounded as diffusers' <c>numpy_to_pil</c>: <c>(x · 255).round()</c>. A uint8 tensor is used as is.
    /// </summary>
    public static Image<Rgb24> ToImage(Tensor image01)
    {
        using var scope = torch.NewDisposeScope();
        var hwc = ToHwc(image01.detach().cpu());
        var bytes = hwc.dtype == ScalarType.Byte ? hwc : hwc.to(ScalarType.Float32).clamp(0, 1).mul(255).round().to(ScalarType.Byte);
        bytes = bytes.contiguous();
        return Image.LoadPixelData<Rgb24>(bytes.bytes, (int)bytes.shape[1], (int)bytes.shape[0]);
    }

    static Tensor ToHwc(Tensor t)
    {
        if (t.dim() == 4 && t.shape[0] == 1) t = t[0];
        if (t.dim() == 3 && t.shape[0] == 3) return t.permute(1, 2, 0);
        if (t.dim() == 3 && t.shape[2] == 3) return t;
        throw new ArgumentException($"Expected an RGB image tensor [3, H, W], [1, 3, H, W] or [H, W, 3], not [{string.Join(", ", t.shape)}].");
    }
}
