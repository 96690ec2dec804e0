using DreamBooth.Engine.IO;
using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>-LossType huber|smooth_l1 with -HuberSchedule and -HuberC: the formulas of diffusers' research script and kohya-ss, and a run with them.</summary>
[Collection(TrainingSerialCollection.Name)]
public sealed class HuberLossTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("db-huber-").FullName;
    public void Dispose() { try { Directory.Delete(_root, true); } catch (IOException) { } }

    [Fact]
    public void TheLosses_AreTheScriptsFormulas()
    {
        var p = torch.tensor(new[] { 0.5f, -1.25f, 3f, 0f });
        var t = torch.tensor(new[] { 0f, 0.75f, -1f, 0f });
        double c = 0.1;
        var errors = new[] { 0.5, -2.0, 4.0, 0.0 };
        var huber = HuberLoss.Elementwise(p, t, "huber", c).data<float>().ToArray();
        var smooth = HuberLoss.Elementwise(p, t, "smooth_l1", c).data<float>().ToArray();
        var l2 = HuberLoss.Elementwise(p, t, "l2", c).data<float>().ToArray();
        for (int i = 0; i < errors.Length; i++)
        {
            double e = errors[i];
            Assert.Equal(2 * c * (Math.Sqrt(e * e + c * c) - c), huber[i], 1e-6);
            Assert.Equal(2 * (Math.Sqrt(e * e + c * c) - c), smooth[i], 1e-6);
            Assert.Equal(e * e, l2[i], 1e-6);
        }
        // Large errors cost about linearly (2c|e|), not quadratically.
        Assert.True(huber[2] < 0.1 * l2[2]);
    }

    [Fact]
    public void TheSchedules_GoFromOneAtCleanInputsToC()
    {
        Assert.Equal(0.1, HuberLoss.ScheduledC("constant", 0.1, 500, 1000, 0.5f));
        Assert.Equal(1.0, HuberLoss.ScheduledC("exponential", 0.1, 0, 1000, 0.99f), 12);
        Assert.Equal(0.1, HuberLoss.ScheduledC("exponential", 0.1, 1000, 1000, 0.01f), 12);
        Assert.Equal(Math.Sqrt(0.1), HuberLoss.ScheduledC("exponential", 0.1, 500, 1000, 0.5f), 12);
        // snr: (1 − c)/(1 + σ)² + c, σ = √((1 − ᾱ)/ᾱ): ᾱ = 0.5 gives σ = 1, so 0.9/4 + 0.1.
        Assert.Equal(0.9 / 4 + 0.1, HuberLoss.ScheduledC("snr", 0.1, 500, 1000, 0.5f), 9);
        Assert.True(HuberLoss.ScheduledC("snr", 0.1, 1, 1000, 0.999f) > 0.9);
        Assert.True(HuberLoss.ScheduledC("snr", 0.1, 999, 1000, 0.005f) < 0.15);
    }

    DreamBoothOptions Options(string output) => new()
    {
        Model = Fixtures.TinySd, InstanceDataDirectory = Fixtures.InstanceImages, InstancePrompt = "a photo of sks toy",
        Resolution = 64, CenterCrop = true, TrainBatchSize = 2, LearningRate = 1e-3, MaxTrainSteps = 3, CheckpointingSteps = 1000,
        Seed = 11, OutputDirectory = Path.Combine(_root, output), Device = "cpu",
    };

    [Theory]
    [InlineData("huber", "snr")]
    [InlineData("smooth_l1", "exponential")]
    public void ARunWithAHuberLoss_TrainsOtherwiseThanL2(string lossType, string schedule)
    {
        var l2 = new List<double>();
        var huber = new List<double>();
        var a = DreamBoothTrainer.Train(Options("l2-" + lossType), new TrainingEvents { Progress = p => { if (p.Phase == "training") l2.Add(p.Loss!.Value); } }, CancellationToken.None);
        var b = DreamBoothTrainer.Train(Options(lossType) with { LossType = lossType, HuberSchedule = schedule },
            new TrainingEvents { Progress = p => { if (p.Phase == "training") huber.Add(p.Loss!.Value); } }, CancellationToken.None);
        Assert.Equal(3, huber.Count);
        Assert.All(huber, v => Assert.True(double.IsFinite(v) && v > 0));
        Assert.NotEqual(l2, huber);
        using var wa = SafetensorsFile.Open(Path.Combine(a.OutputDirectory, "unet", "diffusion_pytorch_model.safetensors"));
        using var wb = SafetensorsFile.Open(Path.Combine(b.OutputDirectory, "unet", "diffusion_pytorch_model.safetensors"));
        var tb = wb.ReadAll();
        Assert.Contains(wa.ReadAll(), kv => !kv.Value.Equals(tb[kv.Key]));
        var o = Options("x");
        Assert.Throws<ArgumentException>((o with { LossType = "l1" }).Validate);
        Assert.Throws<ArgumentException>((o with { HuberSchedule = "cosine" }).Validate);
        Assert.Throws<ArgumentOutOfRangeException>((o with { HuberC = 0 }).Validate);
    }
}
