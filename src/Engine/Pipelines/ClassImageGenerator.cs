using System.Security.Cryptography;
using DreamBooth.Engine.IO;
using TorchSharp;

namespace DreamBooth.Engine.Pipelines;

/// <summary>A class image written by <see cref="ClassImageGenerator"/>.</summary>
public sealed record ClassImageInfo(string Path, string Prompt, long Seed, int Index, GeneratedImage Image);

/// <summary>
/// Prior-preservation class images as diffusers makes them: count the images already in the folder (images only,
/// unlike diffusers, which counts every entry), generate only the shortfall up to the wanted count in batches, and
/// name files "{index}-{sha1}.png" so a rerun never overwrites.
/// </summary>
public static class ClassImageGenerator
{
    public sealed record Plan(string Directory, int Existing, int Wanted)
    {
        public int Missing => Math.Max(0, Wanted - Existing);
    }

    public static Plan Inspect(string directory, int wanted)
    {
        if (wanted < 1) throw new ArgumentOutOfRangeException(nameof(wanted), wanted, "The class image count must be at least 1.");
        int existing = System.IO.Directory.Exists(directory) ? ImageFiles.List(directory).Count : 0;
        return new Plan(Path.GetFullPath(directory), existing, wanted);
    }

    /// <summary>Generates the plan's missing images with <paramref name="baseOptions"/> (its Prompts[0] is the class prompt).</summary>
    public static IReadOnlyList<ClassImageInfo> Generate(StableDiffusionPipeline pipeline, Plan plan, TextToImageOptions baseOptions,
        IProgress<DenoiseProgress>? progress, CancellationToken cancellation, Action<ClassImageInfo>? onImage = null)
    {
        var written = new List<ClassImageInfo>();
        if (plan.Missing == 0) return written;
        System.IO.Directory.CreateDirectory(plan.Directory);
        var options = baseOptions with { ImagesPerPrompt = plan.Missing };
        pipeline.Generate(options, progress, cancellation, img =>
        {
            int index = plan.Existing + img.Index;
            var hash = Convert.ToHexString(SHA1.HashData(img.Pixels.mul(255).round().to(torch.ScalarType.Byte).contiguous().bytes)).ToLowerInvariant();
            var path = UniquePath(plan.Directory, $"{index}-{hash}");
            PngWriter.Save(img.Pixels, path, GenerationMetadata.For(img, pipeline.SourcePath));
            var info = new ClassImageInfo(path, img.Prompt, img.Seed, index, img);
            written.Add(info);
            onImage?.Invoke(info);
        });
        return written;
    }

    static string UniquePath(string dir, string stem)
    {
        var path = Path.Combine(dir, stem + ".png");
        for (int n = 1; File.Exists(path); n++) path = Path.Combine(dir, $"{stem}-{n}.png");
        return path;
    }
}
