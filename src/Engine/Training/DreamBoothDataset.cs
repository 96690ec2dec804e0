using DreamBooth.Engine.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Training;

/// <summary>
/// diffusers' DreamBoothDataset: one prompt for all instance images, item i pairs instance i % n with class i % m,
/// length max(n, m) with prior preservation (else n). Images: EXIF orientation, RGB, shorter side resized (bilinear)
/// to the resolution, center or random crop, optional horizontal flip, normalised to [-1, 1]. Random choices come
/// from the trainer's serialisable generator so a resumed run sees the same crops.
/// </summary>
public sealed class DreamBoothDataset
{
    public IReadOnlyList<string> InstanceImages { get; }
    public IReadOnlyList<string> ClassImages { get; }
    public int Resolution { get; }
    public bool CenterCrop { get; }
    public bool RandomFlip { get; }
    public int Length => ClassImages.Count > 0 ? Math.Max(InstanceImages.Count, ClassImages.Count) : InstanceImages.Count;

    public DreamBoothDataset(IReadOnlyList<string> instanceImages, IReadOnlyList<string> classImages, int resolution, bool centerCrop, bool randomFlip)
    {
        if (instanceImages.Count == 0) throw new ArgumentException("There are no instance images.");
        InstanceImages = instanceImages; ClassImages = classImages;
        Resolution = resolution; CenterCrop = centerCrop; RandomFlip = randomFlip;
    }

    /// <summary>Opens the folders: images only (sorted by name); class images capped at <paramref name="numClassImages"/> as diffusers does.</summary>
    public static DreamBoothDataset FromFolders(string instanceDir, string? classDir, int numClassImages, int resolution, bool centerCrop, bool randomFlip)
    {
        var instances = ImageFiles.List(instanceDir);
        if (instances.Count == 0)
            throw new ArgumentException($"Instance folder '{instanceDir}' holds no images (png, jpg, jpeg, webp, bmp, gif, tiff). Put 3–5 photos of the subject there.");
        var classes = classDir is null ? (IReadOnlyList<string>)Array.Empty<string>() : ImageFiles.List(classDir).Take(numClassImages).ToList();
        return new DreamBoothDataset(instances, classes, resolution, centerCrop, randomFlip);
    }

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

    /// <summary>The view's pixels, [3,R,R] in [-1,1].</summary>
    public Tensor Load(ImageView view)
    {
        using var image = ImageLoader.LoadRgb(view.Path);
        return ImageTransforms.DreamBoothTransform(image, Resolution, (view.Top, view.Left), view.Flip);
    }

    readonly Dictionary<string, (int Width, int Height)> _resizedSizes = new();

    ImageView View(string path, Pcg32 random)
    {
        if (!_resizedSizes.TryGetValue(path, out var size))
        {
            using var image = ImageLoader.LoadRgb(path);   // once per file: the size after EXIF orientation
            _resizedSizes[path] = size = ImageTransforms.ResizedSize(image.Width, image.Height, Resolution);
        }
        var (w, h) = size;
        (int Top, int Left) crop = CenterCrop ? ImageTransforms.CenterCropOffsets(h, w, Resolution)
            : (random.NextInt(h - Resolution + 1), random.NextInt(w - Resolution + 1));
        bool flip = RandomFlip && random.NextDouble() < 0.5;
        return new ImageView(path, crop.Top, crop.Left, flip);
    }
}
