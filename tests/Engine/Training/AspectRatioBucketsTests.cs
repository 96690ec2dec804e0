using DreamBooth.Engine.IO;
using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>
/// kohya-ss' aspect-ratio buckets (-EnableBucket): the bucket sizes its make_bucket_resolutions gives, each image at the
/// nearest aspect ratio, resized to cover and cropped; training with them, prior preservation included, resumes exactly.
/// </summary>
[Collection(TrainingSerialCollection.Name)]
public class AspectRatioBucketsTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("db-buckets-").FullName;
    public void Dispose() { try { Directory.Delete(_root, true); } catch { } }

    [Fact]
    public void Resolutions_AreKohyasForSd15Settings()
    {
        // kohya-ss library/model_util.py make_bucket_resolutions((512, 512)), run in Python: 17 sizes.
        var expected = new[]
        {
            (256, 832), (256, 896), (256, 960), (256, 1024), (320, 704), (320, 768), (384, 640), (448, 576), (512, 512),
            (576, 448), (640, 384), (704, 320), (768, 320), (832, 256), (896, 256), (960, 256), (1024, 256),
        };
        Assert.Equal(expected, new AspectRatioBuckets(512).Resolutions);
        Assert.Equal(new[] { (32, 96), (32, 112), (32, 128), (48, 80), (64, 64), (80, 48), (96, 32), (112, 32), (128, 32) },
            new AspectRatioBuckets(64, 32, 128, 16).Resolutions);
    }

    [Fact]
    public void EachImageTakesTheNearestAspectRatio_CoveredThenCropped()
    {
        var b = new AspectRatioBuckets(512);
        Assert.Equal((448, 576), b.Select(3024, 4032));   // a 3:4 phone portrait (0.75 → 0.778)
        Assert.Equal((576, 448), b.Select(4032, 3024));
        Assert.Equal((512, 512), b.Select(1000, 1000));
        Assert.Equal((384, 640), b.Select(384, 640));     // an image of a bucket's own size keeps it
        Assert.Equal((448, 597), AspectRatioBuckets.CoverSize(3024, 4032, (448, 576)));   // width matches, height covers
        Assert.Equal((597, 448), AspectRatioBuckets.CoverSize(4032, 3024, (576, 448)));
        Assert.Equal((512, 512), AspectRatioBuckets.CoverSize(1000, 1000, (512, 512)));
        Assert.Throws<ArgumentException>(() => new AspectRatioBuckets(512, 100, 1024, 64));
    }

    /// <summary>The toy photos (96×80, landscape) cut to 60×80 portraits (3:4).</summary>
    string Portraits() => Fixtures.PortraitToys(Path.Combine(_root, "portraits"));

    [Fact]
    public void ADatasetLoadsEachViewAtItsBucketsSize()
    {
        var portraits = Directory.GetFiles(Portraits(), "*.png").Order().ToList();
        var data = new DreamBoothDataset(portraits, Array.Empty<string>(), 64, centerCrop: true, randomFlip: false) { Buckets = new AspectRatioBuckets(64, 32, 128, 16) };
        var (view, _) = data.Plan(0, new Pcg32(1));
        Assert.Equal((48, 80), (view.Width, view.Height));   // 0.75 → 48×80 (0.6) rather than 64×64
        Assert.Equal((0, 6), (view.Top, view.Left));          // 60×80 already covers 48×80: 6 px cut at each side
        using var pixels = data.Load(view);
        Assert.Equal(new long[] { 3, 80, 48 }, pixels.shape);
    }

    DreamBoothOptions Options(string output, int steps) => new()
    {
        Model = Fixtures.TinySd, InstanceDataDirectory = Portraits(), InstancePrompt = "a photo of sks toy",
        WithPriorPreservation = true, ClassDataDirectory = Path.Combine(_root, "class"), ClassPrompt = "a photo of toy",
        NumClassImages = 2, SampleBatchSize = 2, ClassImageSteps = 2, RandomFlip = true,
        Resolution = 64, EnableBucket = true, MinBucketResolution = 32, MaxBucketResolution = 128, BucketResolutionSteps = 16,
        LearningRate = 1e-4, MaxTrainSteps = steps, CheckpointingSteps = 2, Seed = 3, OutputDirectory = Path.Combine(_root, output), Device = "cpu",
    };

    [Fact]
    public void TrainsPortraitsInTheirBucket_BesideSquareClassImages_AndResumesExactly()
    {
        var logs = new List<string>();
        var losses = new List<double>();
        var full = DreamBoothTrainer.Train(Options("full", 4), new TrainingEvents
        {
            Log = logs.Add, Progress = p => { if (p.Phase == "training") losses.Add(p.Loss!.Value); },
        }, CancellationToken.None);
        Assert.Equal(4, full.Steps);
        Assert.Contains(logs, l => l.Contains("Aspect-ratio buckets (-EnableBucket):") && l.Contains("48x80: 4 image(s)") && l.Contains("64x64: 2 image(s)"));
        Assert.All(losses, l => Assert.True(double.IsFinite(l) && l > 0));

        var split = DreamBoothTrainer.Train(Options("split", 2), new TrainingEvents(), CancellationToken.None);
        var resumed = DreamBoothTrainer.Resume(split.OutputDirectory, 4, new TrainingEvents(), CancellationToken.None);
        using var a = SafetensorsFile.Open(Path.Combine(full.OutputDirectory, "unet", "diffusion_pytorch_model.safetensors"));
        using var b = SafetensorsFile.Open(Path.Combine(resumed.OutputDirectory, "unet", "diffusion_pytorch_model.safetensors"));
        var wa = a.ReadAll(); var wb = b.ReadAll();
        foreach (var (name, t) in wa) Assert.True(t.Equals(wb[name]), $"{name} differs after resume");
        using var base0 = SafetensorsFile.Open(Path.Combine(Fixtures.TinySd, "unet", "diffusion_pytorch_model.safetensors"));
        var w0 = base0.ReadAll();
        Assert.Contains(wa, kv => !kv.Value.Equals(w0[kv.Key]));
    }

    [Fact]
    public void CachedLatents_TrainAsUncachedOnes_InBuckets()
    {
        var o = Options("uncached", 2) with { CenterCrop = true, RandomFlip = false };
        var plain = DreamBoothTrainer.Train(o, new TrainingEvents(), CancellationToken.None);
        var cached = DreamBoothTrainer.Train(o with { CacheLatents = true, OutputDirectory = Path.Combine(_root, "cached") }, new TrainingEvents(), CancellationToken.None);
        using var a = SafetensorsFile.Open(Path.Combine(plain.OutputDirectory, "unet", "diffusion_pytorch_model.safetensors"));
        using var b = SafetensorsFile.Open(Path.Combine(cached.OutputDirectory, "unet", "diffusion_pytorch_model.safetensors"));
        var wb = b.ReadAll();
        foreach (var (name, t) in a.ReadAll()) Assert.True(t.Equals(wb[name]), $"{name} differs with cached latents");
    }

    [Fact]
    public void BucketSidesMustBeInSteps()
    {
        var o = Options("x", 1);
        (o with { TrainBatchSize = 2 }).Validate();   // batches keep to one bucket
        Assert.Throws<ArgumentOutOfRangeException>((o with { BucketResolutionSteps = 12 }).Validate);
        Assert.Throws<ArgumentOutOfRangeException>((o with { MaxBucketResolution = 48 }).Validate);
    }

    /// <summary>The toy photos twice: as they are (96×80, the 64×64 bucket) and as portraits (the 48×80 bucket).</summary>
    List<string> MixedImages()
    {
        var dir = Directory.CreateDirectory(Path.Combine(_root, "mixed")).FullName;
        foreach (var f in Directory.GetFiles(Path.Combine(Fixtures.Root, "..", "..", "examples", "data", "sks-toy"), "*.png"))
            File.Copy(f, Path.Combine(dir, "landscape-" + Path.GetFileName(f)), overwrite: true);
        foreach (var f in Directory.GetFiles(Portraits(), "*.png"))
            File.Copy(f, Path.Combine(dir, "portrait-" + Path.GetFileName(f)), overwrite: true);
        return ImageFiles.List(dir).ToList();
    }

    [Fact]
    public void BatchesOfSeveralImages_KeepToTheBucketOfTheirInstanceImages()
    {
        var images = MixedImages();
        Assert.Equal(8, images.Count);
        var data = new DreamBoothDataset(images, Array.Empty<string>(), 64, centerCrop: true, randomFlip: false) { Buckets = new AspectRatioBuckets(64, 32, 128, 16) };
        (int, int) SizeOf(int item) { var v = data.Plan(item, new Pcg32(0)).Instance; return (v.Width, v.Height); }
        Assert.Equal(new[] { (64, 64), (48, 80) }, Enumerable.Range(0, 8).Select(SizeOf).Distinct().OrderByDescending(s => s.Item1));

        var order = data.EpochOrder(3, new Pcg32(7));
        var batches = data.Batches(order, 3);
        Assert.Equal(Enumerable.Range(0, 8), order.Order());                 // every item once
        Assert.Equal(4, batches.Count);                                      // 4 + 4 images in batches of 3: 2 batches each
        Assert.Equal(4, data.BatchesPerEpoch(3));
        Assert.Equal(order, batches.SelectMany(b => b));
        Assert.All(batches, b => Assert.Single(b.Select(SizeOf).Distinct()));
        Assert.All(batches, b => Assert.InRange(b.Length, 1, 3));
        Assert.Equal(order, data.EpochOrder(3, new Pcg32(7)));                // seeded
        Assert.NotEqual(order, data.EpochOrder(3, new Pcg32(8)));
        Assert.Equal(3, data.BatchesPerEpoch(3, length: 6));                 // items 0–5: the 4 landscapes (2 batches), 2 portraits (1)

        // One image a batch (and no buckets) keep diffusers' plain shuffle, so earlier runs resume as they were.
        var plain = Enumerable.Range(0, 8).ToArray();
        new Pcg32(7).Shuffle(plain);
        Assert.Equal(plain, data.EpochOrder(1, new Pcg32(7)));
        Assert.Equal(8, data.BatchesPerEpoch(1));
    }

    DreamBoothOptions MixedOptions(string output, int steps) => Options(output, steps) with
    {
        InstanceDataDirectory = Path.GetDirectoryName(MixedImages()[0])!, TrainBatchSize = 2, NumClassImages = 3,
    };

    [Fact]
    public void BatchesOfTwo_TrainPortraitsAndLandscapesBesideClassImages_AndResumeExactly()
    {
        var logs = new List<string>();
        var full = DreamBoothTrainer.Train(MixedOptions("full", 4), new TrainingEvents { Log = logs.Add }, CancellationToken.None);
        Assert.Equal(4, full.Steps);
        Assert.Contains("  Num batches each epoch = 4", logs);   // 8 items, two buckets of 4, batches of 2

        var split = DreamBoothTrainer.Train(MixedOptions("split", 3), new TrainingEvents(), CancellationToken.None);
        var resumed = DreamBoothTrainer.Resume(split.OutputDirectory, 4, new TrainingEvents(), CancellationToken.None);
        using var a = SafetensorsFile.Open(Path.Combine(full.OutputDirectory, "unet", "diffusion_pytorch_model.safetensors"));
        using var b = SafetensorsFile.Open(Path.Combine(resumed.OutputDirectory, "unet", "diffusion_pytorch_model.safetensors"));
        var wb = b.ReadAll();
        foreach (var (name, t) in a.ReadAll()) Assert.True(t.Equals(wb[name]), $"{name} differs after resume");
    }
}
