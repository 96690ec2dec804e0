using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace DreamBooth.Engine.IO;

/// <summary>
/// Loads an image as diffusers' DreamBooth dataset does with PIL: <c>exif_transpose</c> (EXIF orientation applied and
/// dropped), then <c>.convert("RGB")</c>. Like PIL, alpha is dropped without compositing onto any background (a
/// transparent pixel keeps its stored colour), grey is replicated to R=G=B, palettes are expanded, and only the first
/// frame of an animation is used. Differences: 16-bit inputs are scaled to 8 bits by ImageSharp (PIL clips I;16), and
/// CMYK/YCCK JPEGs go through ImageSharp's colour conversion.
/// </summary>
public static class ImageLoader
{
    public static Image<Rgb24> LoadRgb(string path)
    {
        path = Path.GetFullPath(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"The image '{path}' does not exist.", path);
        Image<Rgb24> image;
        try { image = Image.Load<Rgb24>(path); }
        catch (UnknownImageFormatException e) { throw new ImageLoadException(path, "it is not an image in a supported format (PNG, JPEG, WebP, BMP, GIF, TIFF)", e); }
        catch (Exception e) when (e is ImageFormatException or InvalidImageContentException or NotSupportedException or EndOfStreamException)
        { throw new ImageLoadException(path, "the file is corrupt or truncated (" + e.Message + ")", e); }
        try
        {
            if (image.Frames.Count > 1)
            {
                var first = image.Frames.CloneFrame(0);
                first.Metadata.ExifProfile ??= image.Metadata.ExifProfile;
                image.Dispose();
                image = first;
            }
            image.Mutate(x => x.AutoOrient());
            return image;
        }
        catch { image.Dispose(); throw; }
    }
}
