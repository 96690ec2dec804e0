namespace DreamBooth.Engine.IO;

/// <summary>An image file that cannot be decoded (corrupt, truncated or of an unsupported format). The message names the file.</summary>
public sealed class ImageLoadException : IOException
{
    public string FilePath { get; }
    public ImageLoadException(string path, string problem, Exception? inner = null)
        : base($"Cannot read the image '{path}': {problem}. Remove or re-save the file.", inner) => FilePath = path;
}
