namespace DreamBooth.Engine.IO;

/// <summary>Finding training images in a folder.</summary>
public static class ImageFiles
{
    /// <summary>Extensions read as images (compared case-insensitively).</summary>
    public static IReadOnlyList<string> Extensions { get; } = new[] { ".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff" };

    /// <summary>True when the file name has an image extension (the content is not checked).</summary>
    public static bool IsImageFile(string path) => Extensions.Contains(Path.GetExtension(path), StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// The image files directly in <paramref name="directory"/> (not sub-folders; hidden dot-files skipped), sorted ordinally by
    /// file name so every run and machine sees the same order (diffusers uses the unsorted <c>Path.iterdir()</c>).
    /// </summary>
    public static IReadOnlyList<string> List(string directory)
    {
        var dir = Path.GetFullPath(directory);
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException(File.Exists(dir)
                ? $"'{dir}' is a file; expected a folder of images ({string.Join(", ", Extensions)})."
                : $"The image folder '{dir}' does not exist.");
        return Directory.EnumerateFiles(dir)
            .Where(f => IsImageFile(f) && !Path.GetFileName(f).StartsWith('.'))
            .OrderBy(f => Path.GetFileName(f), StringComparer.Ordinal)
            .ToList();
    }
}
