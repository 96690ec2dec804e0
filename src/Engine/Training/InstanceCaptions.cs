namespace DreamBooth.Engine.Training;

/// <summary>
/// kohya-ss' caption files (<c>--caption_extension</c>): an instance image's prompt is the first line of a text file
/// beside it with the same name (<c>dog1.png</c> → <c>dog1.txt</c>); images without one get the instance prompt.
/// diffusers' DreamBooth script has one prompt for all instance images, which is what no extension gives.
/// </summary>
public static class InstanceCaptions
{
    /// <summary>The caption extension with its leading dot ("txt" → ".txt").</summary>
    public static string Normalize(string extension) => extension.StartsWith('.') ? extension : "." + extension;

    /// <summary>The caption file that belongs to <paramref name="image"/>.</summary>
    public static string PathFor(string image, string extension) => Path.ChangeExtension(image, null) + Normalize(extension);

    /// <summary>
    /// Each image's prompt, in the order of <paramref name="images"/>: its caption where <paramref name="extension"/> is
    /// set and the file exists, else <paramref name="instancePrompt"/>. A caption file whose first line is blank is an
    /// error (<see cref="InvalidDataException"/> naming it), not a silent fallback.
    /// </summary>
    public static IReadOnlyList<string> Read(IReadOnlyList<string> images, string? extension, string instancePrompt)
    {
        if (string.IsNullOrEmpty(extension)) return images.Select(_ => instancePrompt).ToList();
        var prompts = new List<string>(images.Count);
        foreach (var image in images)
        {
            var file = PathFor(image, extension);
            if (!File.Exists(file)) { prompts.Add(instancePrompt); continue; }
            string first;
            using (var reader = new StreamReader(file, detectEncodingFromByteOrderMarks: true))
                first = (reader.ReadLine() ?? "").Trim();
            if (first.Length == 0)
                throw new InvalidDataException($"Caption file '{file}' is empty: write the image's prompt on its first line (e.g. 'a photo of sks dog on a sofa'), or delete the file so the image gets -InstancePrompt.");
            prompts.Add(first);
        }
        return prompts;
    }
}
