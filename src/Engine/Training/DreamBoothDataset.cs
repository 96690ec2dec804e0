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
    /// <summary>The class prompt of each class image, in the same order (several concepts: each its own), or null: one for all.</summary>
    public IReadOnlyList<string>? ClassPrompts { get; init; }
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
    /// Opens a run's folders: images only (sorted by name); each instance image's prompt from its caption file where
    /// <paramref name="captionExtension"/> is set, else its concept's; class images capped at <paramref name="numClassImages"/>
    /// per class folder as diffusers does. Several concepts (<see cref="DreamBoothConcept"/>) are joined as the
    /// concepts-list fork of diffusers' script joins them: every concept's instance images in turn, every class folder's
    /// images with its concept's class prompt (a folder two concepts share is read once); items pair instance i % n with
    /// class i % m as for one concept. A concept's <see cref="DreamBoothConcept.Repeats"/> lists its images that many times.
    /// </summary>
    public static DreamBoothDataset FromConcepts(IReadOnlyList<DreamBoothConcept> concepts, bool withPrior, int numClassImages, int resolution,
        bool centerCrop, bool randomFlip, string? captionExtension = null, AspectRatioBuckets? buckets = null)
    {
        var instances = new List<string>();
        var prompts = new List<string>();
        foreach (var c in concepts)
        {
            if (!Directory.Exists(c.InstanceDataDirectory))
                throw new DirectoryNotFoundException($"Instance folder '{c.InstanceDataDirectory}' does not exist. Put 3–5 photos of the subject in a folder and pass it as -InstanceDataDirectory.");
            var images = ImageFiles.List(c.InstanceDataDirectory);
            if (images.Count == 0)
                throw new ArgumentException($"Instance folder '{c.InstanceDataDirectory}' holds no images (png, jpg, jpeg, webp, bmp, gif, tiff). Put 3–5 photos of the subject there.");
            var captions = InstanceCaptions.Read(images, captionExtension, c.InstancePrompt);
            for (int r = 0; r < c.Repeats; r++)   // kohya-ss' repeats: the images again, each a dataset item of its own
            {
                instances.AddRange(images);
                prompts.AddRange(captions);
            }
        }
        var classes = new List<string>();
        var classPrompts = new List<string>();
        if (withPrior)
            foreach (var folder in concepts.GroupBy(c => c.ClassFolderKey))
            {
                var images = ImageFiles.List(folder.First().ClassDataDirectory!).Take(numClassImages).ToList();
                classes.AddRange(images);
                classPrompts.AddRange(images.Select(_ => folder.First().ClassPrompt ?? ""));
            }
        return new DreamBoothDataset(instances, classes, resolution, centerCrop, randomFlip, prompts) { Buckets = buckets, ClassPrompts = classPrompts };
    }

    /// <summary>The class prompt of item <paramref name="index"/>'s class image; <paramref name="fallback"/> where the dataset has one for all.</summary>
    public string ClassPromptOf(int index, string fallback) => ClassPrompts is { Count: > 0 } p ? p[index % ClassImages.Count] : fallback;

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

    /// <summary>
    /// One epoch's item order, shuffled. With aspect-ratio buckets and batches of more than one image, as kohya-ss'
    /// BucketManager: each bucket's items are shuffled and cut into batches, and the batches are shuffled, so that a
    /// batch keeps to the bucket of its instance images (<see cref="Batches"/>).
    /// </summary>
    public int[] EpochOrder(int batchSize, Pcg32 random)
    {
        if (!GroupsByBucket(batchSize))
        {
            var order = Enumerable.Range(0, Length).ToArray();
            random.Shuffle(order);
            return order;
        }
        var batches = new List<int[]>();
        foreach (var bucket in ItemsByBucket())
        {
            random.Shuffle(bucket);
            batches.AddRange(bucket.Chunk(batchSize));
        }
        random.Shuffle(batches);
        return batches.SelectMany(b => b).ToArray();
    }

    /// <summary>
    /// An epoch order cut into batches: every <paramref name="batchSize"/> items, and with buckets also where the
    /// instance bucket changes. The cut depends on the order alone, so a resumed run finds the same batches.
    /// </summary>
    public IReadOnlyList<int[]> Batches(int[] order, int batchSize)
    {
        if (!GroupsByBucket(batchSize)) return order.Chunk(batchSize).ToList();
        var batches = new List<int[]>();
        var current = new List<int>();
        foreach (int item in order)
        {
            if (current.Count == batchSize || (current.Count > 0 && ItemBucket(current[0]) != ItemBucket(item)))
            {
                batches.Add(current.ToArray());
                current.Clear();
            }
            current.Add(item);
        }
        if (current.Count > 0) batches.Add(current.ToArray());
        return batches;
    }

    /// <summary>How many batches an epoch has (with buckets: each bucket's items make their own batches).</summary>
    /// <param name="length">the items of an epoch, where the class images are not there yet (Preflight); else <see cref="Length"/></param>
    public int BatchesPerEpoch(int batchSize, int? length = null) => GroupsByBucket(batchSize)
        ? ItemsByBucket(length ?? Length).Sum(items => (items.Length + batchSize - 1) / batchSize)
        : ((length ?? Length) + batchSize - 1) / batchSize;

    bool GroupsByBucket(int batchSize) => Buckets is not null && batchSize > 1;

    /// <summary>The items of each instance bucket, buckets in size order, items ascending.</summary>
    List<int[]> ItemsByBucket(int? length = null) => Enumerable.Range(0, length ?? Length).GroupBy(ItemBucket)
        .OrderBy(g => g.Key.Width).ThenBy(g => g.Key.Height).Select(g => g.ToArray()).ToList();

    /// <summary>The bucket item <paramref name="index"/>'s instance image trains at.</summary>
    (int Width, int Height) ItemBucket(int index) => Measure(InstanceImages[index % InstanceImages.Count]).Crop;

    /// <summary>
    /// Whether every image has one view only: no random flip, and a center crop or nothing to crop (the image resized
    /// to the resolution, or to its bucket, is the crop). Then each image's latent distribution never changes.
    /// </summary>
    public bool HasFixedViews() => !RandomFlip && (CenterCrop || InstanceImages.Concat(ClassImages).Distinct()
        .All(path => Measure(path) is var sizes && sizes.Resized == sizes.Crop));

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
