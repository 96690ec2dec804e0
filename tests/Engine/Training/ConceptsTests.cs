using DreamBooth.Engine.IO;
using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>
/// Several subjects in one run (-Concept; the concepts list of the DreamBooth fork of diffusers' script): each concept's
/// images train with its own prompt, each class folder is filled with its own class prompt, and the run resumes exactly.
/// </summary>
[Collection(TrainingSerialCollection.Name)]
public sealed class ConceptsTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("db-concepts-").FullName;
    public void Dispose() { try { Directory.Delete(_root, true); } catch (IOException) { } }

    string Toys => Fixtures.InstanceImages;

    /// <summary>The toy photos cut to 60×80 portraits: a second subject.</summary>
    string Figures() => Fixtures.PortraitToys(Path.Combine(_root, "figures"), 2, "figure-");

    DreamBoothOptions Options(string output, int steps) => new()
    {
        Model = Fixtures.TinySd, InstanceDataDirectory = Toys, InstancePrompt = "a photo of sks toy",
        WithPriorPreservation = true, ClassDataDirectory = Path.Combine(_root, "class-toy"), ClassPrompt = "a photo of toy",
        Concepts = new[]
        {
            new DreamBoothConcept { InstanceDataDirectory = Figures(), InstancePrompt = "a photo of zwx figure",
                ClassDataDirectory = Path.Combine(_root, "class-figure"), ClassPrompt = "a photo of figure" },
        },
        NumClassImages = 2, SampleBatchSize = 2, ClassImageSteps = 2, Resolution = 64, CenterCrop = true, TrainBatchSize = 2,
        LearningRate = 1e-4, MaxTrainSteps = steps, CheckpointingSteps = 2, Seed = 5, OutputDirectory = Path.Combine(_root, output), Device = "cpu",
    };

    [Fact]
    public void EachConceptTrainsWithItsPrompts_AndFillsItsOwnClassFolder_AndResumesExactly()
    {
        var prompts = new List<IReadOnlyList<string>>();
        var logs = new List<string>();
        var full = DreamBoothTrainer.Train(Options("full", 4), new TrainingEvents { Log = logs.Add, BatchPrompts = prompts.Add }, CancellationToken.None);
        Assert.Equal(4, full.Steps);
        Assert.Equal(2, ImageFiles.List(Path.Combine(_root, "class-toy")).Count);
        Assert.Equal(2, ImageFiles.List(Path.Combine(_root, "class-figure")).Count);
        Assert.Contains(logs, l => l.Contains("Generated 2 class image(s) of 'a photo of figure'"));
        Assert.Contains("Concepts: 'a photo of sks toy' (4 images, class 'a photo of toy'); 'a photo of zwx figure' (2 images, class 'a photo of figure').", logs);
        Assert.Contains("  Num examples = 6", logs);   // 4 + 2 instance images, 2 + 2 class images

        // Item i pairs instance image i with class image i % 4, each with its own concept's prompt.
        var data = DreamBoothDataset.FromConcepts(Options("x", 1).AllConcepts, true, 2, 64, true, false);
        Assert.Equal(new[] { "a photo of sks toy", "a photo of sks toy", "a photo of sks toy", "a photo of sks toy", "a photo of zwx figure", "a photo of zwx figure" },
            data.InstancePrompts);
        Assert.Equal(new[] { "a photo of toy", "a photo of toy", "a photo of figure", "a photo of figure" }, data.ClassPrompts);
        Assert.Equal("a photo of figure", data.ClassPromptOf(6, ""));
        var seen = prompts.SelectMany(p => p).ToHashSet();
        Assert.Superset(new HashSet<string> { "a photo of sks toy", "a photo of zwx figure", "a photo of toy", "a photo of figure" }, seen);
        Assert.Equal(4, seen.Count);

        var split = DreamBoothTrainer.Train(Options("split", 3), new TrainingEvents(), CancellationToken.None);
        var resumed = DreamBoothTrainer.Resume(split.OutputDirectory, 4, new TrainingEvents(), CancellationToken.None);
        Assert.Equal("a photo of zwx figure", resumed.Options.Concepts![0].InstancePrompt);
        using var a = SafetensorsFile.Open(Path.Combine(full.OutputDirectory, "unet", "diffusion_pytorch_model.safetensors"));
        using var b = SafetensorsFile.Open(Path.Combine(resumed.OutputDirectory, "unet", "diffusion_pytorch_model.safetensors"));
        var wb = b.ReadAll();
        foreach (var (name, t) in a.ReadAll()) Assert.True(t.Equals(wb[name]), $"{name} differs after resume");
    }

    [Fact]
    public void Repeats_ListAConceptsImagesThatManyTimes()
    {
        var o = Options("x", 1) with { Repeats = 3 };
        var data = DreamBoothDataset.FromConcepts(o.AllConcepts, false, 2, 64, true, false);
        Assert.Equal(3 * 4 + 2, data.InstanceImages.Count);
        Assert.Equal(data.InstanceImages.Take(4), data.InstanceImages.Skip(4).Take(4));
        Assert.Equal(Enumerable.Repeat("a photo of sks toy", 12).Append("a photo of zwx figure").Append("a photo of zwx figure"), data.InstancePrompts);
        Assert.Equal(14, data.Length);
        Assert.Throws<ArgumentOutOfRangeException>((o with { Repeats = 0 }).Validate);
        Assert.Throws<ArgumentOutOfRangeException>((o with { Concepts = new[] { o.Concepts![0] with { Repeats = 0 } } }).Validate);
    }

    [Fact]
    public void IncompleteOrClashingConcepts_AreRefusedBeforeAnyWork()
    {
        var o = Options("x", 1);
        var second = o.Concepts![0];
        Assert.Contains("Concept 2 needs an InstancePrompt", Assert.Throws<ArgumentException>(
            (o with { Concepts = new[] { second with { InstancePrompt = "" } } }).Validate).Message);
        Assert.Contains("ClassPrompt", Assert.Throws<ArgumentException>(
            (o with { Concepts = new[] { second with { ClassPrompt = null } } }).Validate).Message);
        Assert.Contains("share the class folder", Assert.Throws<ArgumentException>(
            (o with { Concepts = new[] { second with { ClassDataDirectory = o.ClassDataDirectory } } }).Validate).Message);
        (o with { Concepts = new[] { second with { ClassDataDirectory = o.ClassDataDirectory, ClassPrompt = o.ClassPrompt } } }).Validate();   // same class: fine
        Assert.Throws<DirectoryNotFoundException>(() => DreamBoothTrainer.Preflight(o with { Concepts = new[] { second with { InstanceDataDirectory = Path.Combine(_root, "nope") } } }));

        // A class folder two concepts share is read once.
        var shared = DreamBoothDataset.FromConcepts(new[]
        {
            new DreamBoothConcept { InstanceDataDirectory = Toys, InstancePrompt = "a", ClassDataDirectory = Toys, ClassPrompt = "c" },
            new DreamBoothConcept { InstanceDataDirectory = Toys, InstancePrompt = "b", ClassDataDirectory = Toys + "/", ClassPrompt = "c" },
        }, true, 10, 64, true, false);
        Assert.Equal(8, shared.InstanceImages.Count);
        Assert.Equal(4, shared.ClassImages.Count);
    }
}
