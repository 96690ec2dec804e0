using System.Text;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Formats.Png.Chunks;
using SixLabors.ImageSharp.PixelFormats;
using static TorchSharp.torch;

namespace DreamBooth.Engine.IO;

/// <summary>
/// Saves generated images as 8-bit RGB PNGs with text metadata (e.g. A1111's "parameters" chunk), atomically.
/// Latin-1 text goes into uncompressed tEXt chunks as A1111/PIL write it; other text into UTF-8 iTXt chunks.
/// </summary>
public static class PngWriter
{
    public static void Save(Tensor image01, string path, IReadOnlyDictionary<string, string>? textMetadata = null)
    {
        using var image = ImageTensor.ToImage(image01);
        Save(image, path, textMetadata);
    }

    public static void Save(Image<Rgb24> image, string path, IReadOnlyDictionary<string, string>? textMetadata = null)
    {
        var png = image.Metadata.GetPngMetadata();
        png.TextData.Clear();
        foreach (var (key, value) in textMetadata ?? new Dictionary<string, string>())
        {
            // PNG keywords: 1-79 Latin-1 printable characters, no leading/trailing/double spaces.
            if (key.Length is 0 or > 79 || key.Any(c => c > 255 || c < 32 || (c > 126 && c < 161)) || key != key.Trim() || key.Contains("  "))
                throw new ArgumentException($"'{key}' is not a valid PNG text keyword (1-79 Latin-1 characters).", nameof(textMetadata));
            png.TextData.Add(new PngTextData(key, value, "", ""));
        }
        var encoder = new PngEncoder
        {
            ColorType = PngColorType.Rgb, BitDepth = PngBitDepth.Bit8,
            TextCompressionThreshold = int.MaxValue,   // tEXt, not zTXt, however long the prompt
        };
        AtomicFile.Write(path, s => image.SaveAsPng(s, encoder));
    }
}
