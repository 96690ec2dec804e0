using DreamBooth.Engine.Schedulers;
using DreamBooth.Engine.IO;
using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>kohya-ss' --noise_offset amount, multires noise and debiased estimation, diffusers' --input_perturbation and the text encoder's clip skip in training.</summary>
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

    /// <summary>The training noise scheduler of the tiny pipeline, as the trainer makes it.</summary>
    static DDPMScheduler TinyNoiseScheduler() => (DDPMScheduler)SchedulerFactory.Create("DDPMScheduler",
        DreamBooth.Engine.Schedulers.SchedulerConfig.LoadJson(Path.Combine(Fixtures.TinySd, "scheduler", "scheduler_config.json")));

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

        // kohya-ss' adaptive noise scale: 0 leaves the offset as it is; another value moves it with the latents' mean.
        var adaptiveZero = Load(Run(Options("adaptive-0", 2) with { NoiseOffset = 0.1, AdaptiveNoiseScale = 0 }), "unet");
        var adaptive = Load(Run(Options("adaptive", 2) with { NoiseOffset = 0.1, AdaptiveNoiseScale = 0.5 }), "unet");
        Assert.All(amount, kv => Assert.True(kv.Value.Equals(adaptiveZero[kv.Key]), kv.Key));
        Assert.Contains(amount, kv => !kv.Value.Equals(adaptive[kv.Key]));
        Assert.Throws<ArgumentException>((Options("x", 1) with { AdaptiveNoiseScale = 0.5 }).Validate);   // needs an offset
    }

    [Fact]
    public void InputPerturbation_NoisesTheInputOnly()
    {
        using var scheduler = TinyNoiseScheduler();
        using var g = new torch.Generator(3);
        var latents = torch.randn(new long[] { 2, 4, 8, 8 }, generator: g);
        var noise = torch.randn(new long[] { 2, 4, 8, 8 }, generator: g);
        var perturbed = noise + 0.1 * torch.randn(new long[] { 2, 4, 8, 8 }, generator: g);
        var timesteps = torch.tensor(new long[] { 100, 700 });
        var r = DreamBoothLoss.Compute((x, t, c) => x, scheduler, latents, noise, timesteps, torch.zeros(2, 77, 32), false, 1.0, null, inputNoise: perturbed);
        Assert.True(r.NoisyLatents.Equals(scheduler.AddNoise(latents, perturbed, timesteps)));
        Assert.True(r.Target.Equals(noise));

        var plain = Load(Run(Options("plain", 2)), "unet");
        var perturbedRun = Load(Run(Options("perturbed", 2) with { InputPerturbation = 0.1 }), "unet");
        var zero = Load(Run(Options("zero", 2) with { InputPerturbation = 0 }), "unet");
        Assert.All(plain, kv => Assert.True(kv.Value.Equals(zero[kv.Key]), kv.Key));   // 0 draws nothing
        Assert.Contains(plain, kv => !kv.Value.Equals(perturbedRun[kv.Key]));
        Assert.Throws<ArgumentOutOfRangeException>((Options("x", 1) with { InputPerturbation = -0.1 }).Validate);
    }

    [Fact]
    public void MultiresNoise_AddsCoarserLevels_AtUnitDeviation()
    {
        using var g = new torch.Generator(5);
        var noise = torch.randn(new long[] { 2, 4, 16, 12 }, generator: g);
        using var g1 = new torch.Generator(9);
        var pyramid = MultiresNoise.Apply(noise, 6, 0.3, g1);
        Assert.Equal(noise.shape, pyramid.shape);
        Assert.Equal(1.0, pyramid.std().item<float>(), 5);
        // By hand for one level: r^0 = 1, so the level is full size and the upscale is the identity.
        using var g2 = new torch.Generator(9);
        torch.rand(1, dtype: ScalarType.Float64, generator: g2);
        var level = torch.randn(new long[] { 2, 4, 16, 12 }, generator: g2);
        var expected = (noise + level) / (noise + level).std();
        using var g3 = new torch.Generator(9);
        Assert.True(MultiresNoise.Apply(noise, 1, 0.3, g3).allclose(expected, rtol: 1e-6, atol: 1e-7));
        // Six levels give other noise than the plain noise rescaled.
        Assert.False(pyramid.allclose(noise / noise.std()));

        var plain = Load(Run(Options("multires-off", 2)), "unet");
        var multires = Load(Run(Options("multires", 2) with { MultiresNoiseIterations = 6 }), "unet");
        Assert.Contains(plain, kv => !kv.Value.Equals(multires[kv.Key]));
        Assert.Throws<ArgumentOutOfRangeException>((Options("x", 1) with { MultiresNoiseDiscount = 0 }).Validate);
    }

    [Fact]
    public void DebiasedEstimation_WeightsEachInstanceSampleByOneOverRootSnr()
    {
        using var scheduler = TinyNoiseScheduler();
        using var g = new torch.Generator(4);
        var latents = torch.randn(new long[] { 4, 4, 8, 8 }, generator: g);
        var noise = torch.randn(new long[] { 4, 4, 8, 8 }, generator: g);
        var timesteps = torch.tensor(new long[] { 50, 900, 300, 600 });
        var context = torch.zeros(4, 77, 32);
        Tensor Unet(Tensor x, Tensor t, Tensor c) => x * 0.5;   // any prediction: the weighting is what is checked
        var plain = DreamBoothLoss.Compute(Unet, scheduler, latents, noise, timesteps, context, true, 1.0, null);
        var debiased = DreamBoothLoss.Compute(Unet, scheduler, latents, noise, timesteps, context, true, 1.0, null, debiasedEstimation: true);
        // The instance half (the first two samples) weighted per sample; the prior half as it was.
        var perSample = (plain.ModelPrediction - plain.Target).pow(2).mean(new long[] { 1, 2, 3 });
        var w = MinSnr.DebiasedWeights(scheduler.AlphasCumprod, timesteps.narrow(0, 0, 2), "epsilon");
        var expected = (perSample.narrow(0, 0, 2) * w).mean();
        Assert.Equal(expected.item<float>(), debiased.InstanceLoss.item<float>(), 5);
        Assert.Equal(plain.PriorLoss!.item<float>(), debiased.PriorLoss!.item<float>());

        var trained = Load(Run(Options("debiased", 2) with { DebiasedEstimationLoss = true }), "unet");
        var untouched = Load(Run(Options("not-debiased", 2)), "unet");
        Assert.Contains(trained, kv => !kv.Value.Equals(untouched[kv.Key]));
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
