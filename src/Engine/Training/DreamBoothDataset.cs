using DreamBooth.Engine.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Training;

/// <summary>
/// diffusers' DreamBoothDataset: one prompt for all instance images (or each its caption file's,
/// <see cref="InstanceCaptions"/>), item i pairs instance i % n with class i % m,
/// length max(n, m) with prior preservation (else n). Images: EXIF orientation, RGB, shorter side resized (bilinear)
/// to the resolution, center or random crop, optional horizontal flip, normalised to [-1, 1]. Random choices come
/// from the trainer's serialisable generator so a resumed run sees the same crops.
/// </summary>
public sealed class DreamBoothDataset
{
    public IReadOnlyList<string> InstanceImages { get; }
    /// <summary>The prompt of each instance image, in the same order (all the instance prompt unless captioned).</summary>
    public IReadOnlyList<string>? InstancePrompts { get; }
    public IReadOnlyList<string> ClassImages { get; }
    public int Resolution { get; }
    public bool CenterCrop { get; }
    public bool RandomFlip { get; }
    /// <summary>kohya-ss' aspect-ratio buckets, or null: every image cropped to the resolution square, as diffusers.</summary>
    public AspectRatioBuckets? Buckets { get; init; }
    public int Length => ClassImages.Count > 0 ? Math.Max(InstanceImages.Count, ClassImages.Count) : InstanceImages.Count;

    public DreamBoothDataset(IReadOnlyList<string> instanceImages, IReadOnlyList<string> classImages, int resolution, bool centerCrop, bool randomFlip,
        IReadOnlyList<string>? instancePrompts = null)
    {
        if (instanceImages.Count == 0) throw new ArgumentException("There are no instance images.");
        if (instancePrompts is not null && instancePrompts.Count != instanceImages.Count)
            throw new ArgumentException($"{instancePrompts.Count} prompts for {instanceImages.Count} instance images.", nameof(instancePrompts));
        InstanceImages = instanceImages; ClassImages = classImages; InstancePrompts = instancePrompts;
        Resolution = resolution; CenterCrop = centerCrop; RandomFlip = randomFlip;
    }

    /// <summary>
    /// Opens the folders: images only (sorted by name); class images capped at <paramref name="numClassImages"/> as
    /// diffusers does; each instance image's prompt from its caption file where <paramref name="captionExtension"/> is set.
    /// </summary>
    public static DreamBoothDataset FromFolders(string instanceDir, string? classDir, int numClassImages, int resolution, bool centerCrop, bool randomFlip,
        string? instancePrompt = null, string? captionExtension = null, AspectRatioBuckets? buckets = null)
    {
        var instances = ImageFiles.List(instanceDir);
        if (instances.Count == 0)
            throw new ArgumentException($"Instance folder '{instanceDir}' holds no images (png, jpg, jpeg, webp, bmp, gif, tiff). Put 3–5 photos of the subject there.");
        var classes = classDir is null ? (IReadOnlyList<string>)Array.Empty<string>() : ImageFiles.List(classDir).Take(numClassImages).ToList();
        var prompts = instancePrompt is null ? null : InstanceCaptions.Read(instances, captionExtension, instancePrompt);
        return new DreamBoothDataset(instances, classes, resolution, centerCrop, randomFlip, prompts) { Buckets = buckets };
    }

    /// <summary>The prompt of item <paramref name="index"/>'s instance image; <paramref name="fallback"/> where the dataset has none.</summary>
    public string InstancePromptOf(int index, string fallback) => InstancePrompts is { } p ? p[index % InstanceImages.Count] : fallback;

    /// <summary>
    /// The views of item <paramref name="index"/> (instance, class or null) without decoding their pixels: the random
    /// choices are drawn here, in a fixed order (instance crop, flip, then class crop, flip).
    /// </summary>
    public (ImageView Instance, ImageView? Class) Plan(int index, Pcg32 random)
    {
        var inst = View(InstanceImages[index % InstanceImages.Count], random);
        ImageView? cls = ClassImages.Count > 0 ? View(ClassImages[index % ClassImages.Count], random) : null;
        return (inst, cls);
    }

    /// <summary>The view's pixels, [3, height, width] in [-1,1] (the resolution square without buckets).</summary>
    public Tensor Load(ImageView view)
    {
        using var image = ImageLoader.LoadRgb(view.Path);
        if (Buckets is null) return ImageTransforms.DreamBoothTransform(image, Resolution, (view.Top, view.Left), view.Flip);
        var (resized, _) = Sizes(image.Width, image.Height);
        return ImageTransforms.BucketTransform(image, resized, view.Top, view.Left, view.Width, view.Height, view.Flip);
    }

    /// <summary>The bucket (width, height) each instance and class image trains at, in file order.</summary>
    public IEnumerable<(int Width, int Height)> BucketsOfImages() =>
        InstanceImages.Concat(ClassImages).Select(path => Measure(path).Crop);

    readonly Dictionary<string, ((int Width, int Height) Resized, (int Width, int Height) Crop)> _sizes = new();

    /// <summary>The size an image is resized to and the crop taken from it: a square, or its bucket.</summary>
    ((int Width, int Height) Resized, (int Width, int Height) Crop) Sizes(int imageWidth, int imageHeight)
    {
        if (Buckets is null) return (ImageTransforms.ResizedSize(imageWidth, imageHeight, Resolution), (Resolution, Resolution));
        var bucket = Buckets.Select(imageWidth, imageHeight);
        return (AspectRatioBuckets.CoverSize(imageWidth, imageHeight, bucket), bucket);
    }

    ((int Width, int Height) Resized, (int Width, int Height) Crop) Measure(string path)
    {
        if (!_sizes.TryGetValue(path, out var sizes))
        {
            using var image = ImageLoader.LoadRgb(path);   // once per file: the size after EXIF orientation
            _sizes[path] = sizes = Sizes(image.Width, image.Height);
        }
        return sizes;
    }

    ImageView View(string path, Pcg32 random)
    {
        var ((w, h), (cw, ch)) = Measure(path);
        (int Top, int Left) crop = CenterCrop ? ImageTransforms.CenterCropOffsets(h, w, ch, cw)
            : (random.NextInt(h - ch + 1), random.NextInt(w - cw + 1));
        bool flip = RandomFlip && random.NextDouble() < 0.5;
        return new ImageView(path, crop.Top, crop.Left, flip, cw, ch);
    }
}
