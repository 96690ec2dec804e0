using DreamBooth.Engine.IO;
using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>
/// kohya-ss' caption augmentation (-ShuffleCaption, -KeepTokens, -KeepTokensSeparator, -CaptionDropoutRate,
/// -CaptionTagDropoutRate, -CaptionDropoutEveryNEpochs): what its process_caption does to a caption, and the trainer
/// training with the captions it draws, resuming with the same draws.
/// </summary>
[Collection(TrainingSerialCollection.Name)]
public sealed class CaptionAugmentationTests : IDisposable
{
    const string Caption = "sks toy, red, on a table, sunny day, photo";
    static readonly string[] Flex = { "red", "on a table", "sunny day", "photo" };

    readonly string _root = Directory.CreateTempSubdirectory("db-captions-").FullName;
    public void Dispose() { try { Directory.Delete(_root, true); } catch (IOException) { } }

    static List<string> Tags(string caption) => caption.Split(", ").ToList();

    [Fact]
    public void Shuffle_KeepsTheFirstTags_AndPermutesTheRest()
    {
        var a = new CaptionAugmentation { Shuffle = true, KeepTokens = 1 };
        var random = new Pcg32(5);
        var seen = new HashSet<string>();
        for (int i = 0; i < 50; i++)
        {
            var tags = Tags(a.Apply(Caption, 0, random));
            Assert.Equal("sks toy", tags[0]);
            Assert.Equal(Flex.Order(), tags.Skip(1).Order());
            seen.Add(string.Join("|", tags));
        }
        Assert.True(seen.Count > 10, $"only {seen.Count} orders in 50 draws");
        // Seeded: the same generator state gives the same captions.
        Assert.Equal(a.Apply(Caption, 0, new Pcg32(9)), a.Apply(Caption, 0, new Pcg32(9)));
        // Tags are trimmed and joined with ", " as kohya's; a caption without commas is one tag and stays as it is.
        Assert.Equal("a photo of sks toy", a.Apply(" a photo of sks toy ", 0, random));
        Assert.Equal("sks toy, red", new CaptionAugmentation { Shuffle = true, KeepTokens = 2 }.Apply("sks toy,red", 0, random));
    }

    [Fact]
    public void KeepTokensSeparator_FixesAPrefixAndASuffix()
    {
        var a = new CaptionAugmentation { Shuffle = true, KeepTokens = 3, KeepTokensSeparator = "|||" };
        var random = new Pcg32(1);
        for (int i = 0; i < 20; i++)
        {
            var tags = Tags(a.Apply("sks toy, photo ||| red, on a table, sunny day ||| best quality", 0, random));
            Assert.Equal(new[] { "sks toy", "photo" }, tags.Take(2));
            Assert.Equal("best quality", tags[^1]);
            Assert.Equal(new[] { "on a table", "red", "sunny day" }, tags.Skip(2).Take(3).Order());
        }
        // Without the separator in the caption, -KeepTokens applies.
        Assert.Equal(new[] { "sks toy", "red", "on a table" }, Tags(a.Apply(Caption, 0, random)).Take(3));
    }

    [Fact]
    public void Dropouts_EmptyCaptionsAtTheirRate_AndDropTagsButNotTheKeptOnes()
    {
        var random = new Pcg32(2);
        var half = new CaptionAugmentation { DropoutRate = 0.5 };
        var drawn = Enumerable.Range(0, 2000).Select(_ => half.Apply(Caption, 0, random)).ToList();
        Assert.All(drawn, c => Assert.True(c is "" or Caption, c));        // dropped whole, or left as it is
        Assert.InRange(drawn.Count(c => c == ""), 900, 1100);             // binomial(2000, 0.5): ±4.5 standard deviations
        Assert.Equal("", new CaptionAugmentation { DropoutRate = 1 }.Apply(Caption, 0, random));

        var everySecond = new CaptionAugmentation { DropoutEveryNEpochs = 2 };
        Assert.Equal(Caption, everySecond.Apply(Caption, 0, random));   // epochs count from 1 there: the first is kept
        Assert.Equal("", everySecond.Apply(Caption, 1, random));
        Assert.Equal(Caption, everySecond.Apply(Caption, 2, random));

        var tags = new CaptionAugmentation { TagDropoutRate = 0.5, KeepTokens = 1 };
        int kept = 0;
        for (int i = 0; i < 500; i++)
        {
            var t = Tags(tags.Apply(Caption, 0, random));
            Assert.Equal("sks toy", t[0]);
            Assert.Equal(t.Skip(1), Flex.Where(t.Contains));   // order kept without -ShuffleCaption
            kept += t.Count - 1;
        }
        Assert.InRange(kept, 900, 1100);   // 2000 tags at 0.5
        Assert.Equal("sks toy", new CaptionAugmentation { TagDropoutRate = 1, KeepTokens = 1 }.Apply(Caption, 0, random));
        Assert.False(new CaptionAugmentation { KeepTokens = 2 }.IsActive);
    }

    [Fact]
    public void Options_AreChecked()
    {
        var o = new DreamBoothOptions { Model = "m", InstanceDataDirectory = "i", InstancePrompt = "p", OutputDirectory = "o" };
        Assert.Throws<ArgumentOutOfRangeException>((o with { CaptionDropoutRate = 1.5 }).Validate);
        Assert.Throws<ArgumentOutOfRangeException>((o with { CaptionTagDropoutRate = -0.1 }).Validate);
        Assert.Throws<ArgumentOutOfRangeException>((o with { KeepTokens = -1 }).Validate);
        Assert.Throws<ArgumentOutOfRangeException>((o with { CaptionDropoutEveryNEpochs = -1 }).Validate);
        Assert.Contains("-ShuffleCaption", Assert.Throws<ArgumentException>((o with { KeepTokens = 1 }).Validate).Message);
        (o with { KeepTokens = 1, ShuffleCaption = true }).Validate();
        (o with { KeepTokensSeparator = "|||", CaptionTagDropoutRate = 0.1 }).Validate();
    }

    string Instances(string caption)
    {
        var dir = Directory.CreateDirectory(Path.Combine(_root, "instances-" + Guid.NewGuid().ToString("N")[..6])).FullName;
        foreach (var f in Directory.GetFiles(Path.Combine(Fixtures.Root, "..", "..", "examples", "data", "sks-toy"), "*.png"))
        {
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
            File.WriteAllText(Path.ChangeExtension(Path.Combine(dir, Path.GetFileName(f)), ".txt"), caption);
        }
        return dir;
    }

    DreamBoothOptions Options(string instances, string output, int steps) => new()
    {
        Model = Fixtures.TinySd, InstanceDataDirectory = instances, InstancePrompt = "a photo of sks toy", CaptionExtension = ".txt",
        WithPriorPreservation = true, ClassDataDirectory = Path.Combine(_root, "class"), ClassPrompt = "a photo of toy",
        NumClassImages = 2, SampleBatchSize = 2, ClassImageSteps = 2, Resolution = 64, CenterCrop = true, TrainBatchSize = 2,
        LearningRate = 1e-4, MaxTrainSteps = steps, CheckpointingSteps = 2, Seed = 3, OutputDirectory = Path.Combine(_root, output), Device = "cpu",
    };

    static Dictionary<string, TorchSharp.torch.Tensor> Unet(string output)
    {
        using var file = SafetensorsFile.Open(Path.Combine(output, "unet", "diffusion_pytorch_model.safetensors"));
        return file.ReadAll();
    }

    [Fact]
    public void Training_UsesTheDrawnCaptions_AndResumesWithTheSameDraws()
    {
        var instances = Instances(Caption);
        var o = Options(instances, "full", 4) with { ShuffleCaption = true, KeepTokens = 1, CaptionDropoutRate = 0.3 };
        var prompts = new List<IReadOnlyList<string>>();
        var logs = new List<string>();
        var full = DreamBoothTrainer.Train(o, new TrainingEvents { Log = logs.Add, BatchPrompts = prompts.Add }, CancellationToken.None);
        Assert.Contains(logs, l => l.StartsWith("Caption augmentation (kohya-ss): tags shuffled after the first 1, 30% of captions empty"));
        Assert.Equal(4, prompts.Count);
        var instancePrompts = prompts.SelectMany(p => p.Take(2)).ToList();
        Assert.All(prompts, p => Assert.Equal(new[] { "a photo of toy", "a photo of toy" }, p.Skip(2)));   // the class prompt as it is
        Assert.All(instancePrompts.Where(p => p != ""), p =>
        {
            Assert.Equal("sks toy", Tags(p)[0]);
            Assert.Equal(Flex.Order(), Tags(p).Skip(1).Order());
        });
        Assert.Contains(instancePrompts, p => p == "");
        Assert.True(instancePrompts.Where(p => p != "").Distinct().Count() > 1);

        // A run stopped at step 2 and resumed draws the same captions for steps 3 and 4, and ends with the same weights.
        var resumedPrompts = new List<IReadOnlyList<string>>();
        var split = DreamBoothTrainer.Train(o with { MaxTrainSteps = 2, OutputDirectory = Path.Combine(_root, "split") }, new TrainingEvents(), CancellationToken.None);
        DreamBoothTrainer.Resume(split.OutputDirectory, 4, new TrainingEvents { BatchPrompts = resumedPrompts.Add }, CancellationToken.None);
        Assert.Equal(prompts.Skip(2), resumedPrompts);
        var a = Unet(full.OutputDirectory);
        var b = Unet(split.OutputDirectory);
        foreach (var (name, t) in a) Assert.True(t.Equals(b[name]), $"{name} differs after resume");
    }

    [Fact]
    public void ACaptionEncodedEachStep_TrainsAsThePrecomputedEmbeddingOfTheSameText()
    {
        // "sks toy,red" comes out of the augmentation as "sks toy, red": a prompt the frozen text encoder did not see
        // before the run, so it is encoded in the step. It must teach exactly what that caption precomputed does.
        var precomputed = DreamBoothTrainer.Train(Options(Instances("sks toy, red"), "precomputed", 2), new TrainingEvents(), CancellationToken.None);
        var prompts = new List<IReadOnlyList<string>>();
        var encoded = DreamBoothTrainer.Train(Options(Instances("sks toy,red"), "encoded", 2) with { ShuffleCaption = true, KeepTokens = 2 },
            new TrainingEvents { BatchPrompts = prompts.Add }, CancellationToken.None);
        Assert.All(prompts, p => Assert.Equal("sks toy, red", p[0]));
        var a = Unet(precomputed.OutputDirectory);
        var b = Unet(encoded.OutputDirectory);
        foreach (var (name, t) in a) Assert.True(t.Equals(b[name]), $"{name} differs");
    }
}
