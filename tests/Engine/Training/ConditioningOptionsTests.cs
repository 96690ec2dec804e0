using DreamBooth.Engine.IO;
using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>kohya-ss' --noise_offset amount and the text encoder's clip skip in training.</summary>
[Collection(TrainingSerialCollection.Name)]
public class ConditioningOptionsTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("db-cond-").FullName;
    public void Dispose() { try { Directory.Delete(_root, true); } catch { } }

    DreamBoothOptions Options(string output, int steps) => new()
    {
        Model = Fixtures.TinySd, InstanceDataDirectory = Fixtures.InstanceImages, InstancePrompt = "a photo of sks toy",
        Resolution = 64, LearningRate = 1e-4, MaxTrainSteps = steps, CheckpointingSteps = 100, Seed = 9,
        OutputDirectory = Path.Combine(_root, output), Device = "cpu",
    };

    static Dictionary<string, Tensor> Load(string folder, string component) => Fixtures.ComponentWeights(folder, component);

    static string Run(DreamBoothOptions o) => DreamBoothTrainer.Train(o, new TrainingEvents(), CancellationToken.None).OutputDirectory;

    [Fact]
    public void NoiseOffset_OfOneTenth_IsOffsetNoise()
    {
        var offset = Load(Run(Options("offset", 2) with { OffsetNoise = true }), "unet");
        var amount = Load(Run(Options("amount", 2) with { NoiseOffset = 0.1 }), "unet");
        var other = Load(Run(Options("other", 2) with { NoiseOffset = 0.05 }), "unet");
        Assert.All(offset, kv => Assert.True(kv.Value.Equals(amount[kv.Key]), kv.Key));
        Assert.Contains(offset, kv => !kv.Value.Equals(other[kv.Key]));
        Assert.Throws<ArgumentOutOfRangeException>((Options("x", 1) with { NoiseOffset = -0.1 }).Validate);
    }

    [Fact]
    public void ClipSkip_ConditionsOnAnEarlierLayer_WhoseLaterLayersGetNoUpdate()
    {
        // With the text encoder trained and clip skip 1, its last layer is not run: no gradient, no update, no decay.
        var dir = Run(Options("skip", 2) with { ClipSkip = 1, TrainTextEncoder = true });
        var trained = Load(dir, "text_encoder");
        var base0 = Fixtures.ComponentWeights(Fixtures.TinySd, "text_encoder");
        int layers = DreamBooth.Engine.Models.TextEncoders.ClipTextConfig.Load(Path.Combine(Fixtures.TinySd, "text_encoder", "config.json")).NumHiddenLayers;
        var last = $"text_model.encoder.layers.{layers - 1}.";
        Assert.All(trained.Where(kv => kv.Key.StartsWith(last)), kv => Assert.True(kv.Value.Equals(base0[kv.Key]), kv.Key));
        Assert.Contains(trained.Where(kv => kv.Key.StartsWith("text_model.encoder.layers.0.")), kv => !kv.Value.Equals(base0[kv.Key]));
        // Frozen text encoder: the precomputed embeddings differ, and so does what the UNet learns.
        var plain = Load(Run(Options("plain", 1)), "unet");
        var skipped = Load(Run(Options("skip-frozen", 1) with { ClipSkip = 1 }), "unet");
        Assert.Contains(plain, kv => !kv.Value.Equals(skipped[kv.Key]));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => DreamBoothTrainer.Preflight(Options("x", 1) with { ClipSkip = layers }));
        Assert.Contains($"text encoder's {layers} layers", e.Message);
    }
}
