using DreamBooth.Engine.Training;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>Validation prompts with kohya-ss' sample-prompt options (--n --w --h --s --l --d).</summary>
[Collection(TrainingSerialCollection.Name)]
public class SamplePromptTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("db-samples-").FullName;
    public void Dispose() { try { Directory.Delete(_root, true); } catch { } }

    [Fact]
    public void ParsesKohyasOptions_AndRefusesUnknownOnes()
    {
        var p = SamplePrompt.Parse("a photo of sks dog, 1girl --n blurry, lowres --w 512 --h 768 --s 30 --l 7.5 --d 42");
        Assert.Equal(new SamplePrompt("a photo of sks dog, 1girl", "blurry, lowres", 512, 768, 30, 7.5, 42), p);
        Assert.True(p.HasOptions);
        var plain = SamplePrompt.Parse("a photo of sks dog -- no options here");   // "--" not followed by an option letter
        Assert.Equal("a photo of sks dog -- no options here", plain.Prompt);
        Assert.False(plain.HasOptions);
        Assert.Contains("Unknown option --x", Assert.Throws<ArgumentException>(() => SamplePrompt.Parse("dog --x 3")).Message);
        Assert.Contains("multiple of 8", Assert.Throws<ArgumentException>(() => SamplePrompt.Parse("dog --w 500")).Message);
        Assert.Contains("positive whole number", Assert.Throws<ArgumentException>(() => SamplePrompt.Parse("dog --s many")).Message);
        // Checked with the run's options, before any work.
        var o = new DreamBoothOptions { Model = ".", InstanceDataDirectory = ".", InstancePrompt = "x", OutputDirectory = ".", ValidationPrompts = new[] { "dog --q 1" } };
        Assert.Throws<ArgumentException>(o.Validate);
    }

    [Fact]
    public void ValidationImages_FollowEachPromptsOptions()
    {
        var images = new List<ValidationImageInfo>();
        var o = new DreamBoothOptions
        {
            Model = Fixtures.TinySd, InstanceDataDirectory = Fixtures.InstanceImages, InstancePrompt = "a photo of sks toy",
            Resolution = 64, LearningRate = 1e-4, MaxTrainSteps = 1, Seed = 3, OutputDirectory = Path.Combine(_root, "run"), Device = "cpu",
            ValidationPrompts = new[] { "sks toy on a beach --n blurry --w 64 --h 48 --s 2 --l 3 --d 77", "sks toy in snow" },
            NumValidationImages = 1, ValidationSteps = 1, ValidationInferenceSteps = 2,
        };
        DreamBoothTrainer.Train(o, new TrainingEvents { ValidationImage = images.Add }, CancellationToken.None);
        Assert.Equal(2, images.Count);
        Assert.Equal(("sks toy on a beach", 77L), (images[0].Prompt, images[0].Seed));
        Assert.Equal(("sks toy in snow", 3L), (images[1].Prompt, images[1].Seed));
        using (var first = Image.Load<Rgb24>(images[0].Path))
        {
            Assert.Equal((64, 48), (first.Width, first.Height));
            var parameters = first.Metadata.GetPngMetadata().TextData.Single(t => t.Keyword == "parameters").Value;
            Assert.Contains("Negative prompt: blurry", parameters);
            Assert.Contains("Steps: 2", parameters);
            Assert.Contains("CFG scale: 3", parameters);
            Assert.Contains("Seed: 77", parameters);
        }
        using (var second = Image.Load<Rgb24>(images[1].Path)) Assert.Equal((64, 64), (second.Width, second.Height));
        Assert.NotEqual(images[0].Path, images[1].Path);
    }
}
