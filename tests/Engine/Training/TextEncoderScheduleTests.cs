using DreamBooth.Engine.IO;
using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>
/// kohya-ss' text-encoder knobs with -TrainTextEncoder: its own learning rate (a second parameter group on the same
/// schedule) and a step after which it stops training while the UNet goes on; both resume exactly.
/// </summary>
[Collection(TrainingSerialCollection.Name)]
public class TextEncoderScheduleTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("db-te-").FullName;
    public void Dispose() { try { Directory.Delete(_root, true); } catch { } }

    DreamBoothOptions Options(string output, int steps) => new()
    {
        Model = Fixtures.TinySd, InstanceDataDirectory = Fixtures.InstanceImages, InstancePrompt = "a photo of sks toy",
        Resolution = 64, TrainBatchSize = 1, LearningRate = 1e-4, MaxTrainSteps = steps, CheckpointingSteps = 2, Seed = 5,
        TrainTextEncoder = true, OutputDirectory = Path.Combine(_root, output), Device = "cpu",
    };

    static Dictionary<string, Tensor> Load(string folder, string component) => Fixtures.ComponentWeights(folder, component);

    static bool Same(Dictionary<string, Tensor> a, Dictionary<string, Tensor> b) => a.All(kv => kv.Value.Equals(b[kv.Key]));

    [Fact]
    public void TheTextEncodersOwnLearningRate_ScalesItsUpdateOnly()
    {
        var plain = DreamBoothTrainer.Train(Options("plain", 1), new TrainingEvents(), CancellationToken.None).OutputDirectory;
        var same = DreamBoothTrainer.Train(Options("same", 1) with { TextEncoderLearningRate = 1e-4 }, new TrainingEvents(), CancellationToken.None).OutputDirectory;
        var twice = DreamBoothTrainer.Train(Options("twice", 1) with { TextEncoderLearningRate = 2e-4 }, new TrainingEvents(), CancellationToken.None).OutputDirectory;
        Assert.True(Same(Load(plain, "text_encoder"), Load(same, "text_encoder")), "the default rate given explicitly changes nothing");
        Assert.True(Same(Load(plain, "unet"), Load(twice, "unet")), "the first step's UNet update does not depend on the text encoder's rate");

        // AdamW's first step moves each weight by lr × (decay term + m̂/(√v̂+ε)), the bracket the same in both runs:
        // twice the rate, twice the move (to the rounding of weights near 1).
        var base0 = Fixtures.ComponentWeights(Fixtures.TinySd, "text_encoder");
        var one = Load(plain, "text_encoder"); var two = Load(twice, "text_encoder");
        double largest = 0, worst = 0;
        foreach (var (name, w0) in base0)
        {
            if (!w0.is_floating_point()) continue;
            var d1 = one[name] - w0; var d2 = two[name] - w0;
            largest = Math.Max(largest, d1.abs().max().item<float>());
            worst = Math.Max(worst, (d2 - 2 * d1).abs().max().item<float>());
        }
        Assert.True(largest > 5e-5, $"the text encoder moved by at most {largest}");
        Assert.True(worst < 1e-6, $"|Δ(2 lr) − 2 Δ(lr)| reached {worst} (largest Δ {largest})");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]   // checkpointed text encoder layers, run without grad once stopped
    public void StoppingTheTextEncoder_KeepsItsWeightsFromThatStep_WhileTheUNetTrainsOn_AndResumesExactly(bool checkpointing)
    {
        var logs = new List<string>();
        var o = Options("stopped" + checkpointing, 4) with { StopTextEncoderTraining = 2, GradientCheckpointing = checkpointing };
        var full = DreamBoothTrainer.Train(o, new TrainingEvents { Log = logs.Add }, CancellationToken.None).OutputDirectory;
        Assert.Contains(logs, l => l.Contains("Text encoder training stopped after step 2"));
        // checkpoint-2 holds the text encoder after its last update.
        var atStop = Path.Combine(full, "checkpoint-2");
        Assert.True(Same(Load(atStop, "text_encoder"), Load(full, "text_encoder")), "the text encoder changed after its stop");
        Assert.False(Same(Load(atStop, "text_encoder"), Fixtures.ComponentWeights(Fixtures.TinySd, "text_encoder")));
        Assert.False(Same(Load(atStop, "unet"), Load(full, "unet")), "the UNet stopped too");

        // Two steps, then a resume to four (which starts past the stop): the same weights as the run in one go.
        var split = DreamBoothTrainer.Train(o with { MaxTrainSteps = 2, OutputDirectory = Path.Combine(_root, "split" + checkpointing) }, new TrainingEvents(), CancellationToken.None).OutputDirectory;
        var resumed = DreamBoothTrainer.Resume(split, 4, new TrainingEvents(), CancellationToken.None).OutputDirectory;
        Assert.True(Same(Load(full, "unet"), Load(resumed, "unet")), "UNet differs after resume");
        Assert.True(Same(Load(full, "text_encoder"), Load(resumed, "text_encoder")), "text encoder differs after resume");
    }

    [Fact]
    public void BothNeedTheTextEncoderTrained()
    {
        var o = Options("x", 1) with { TrainTextEncoder = false };
        Assert.Contains("-TextEncoderLearningRate needs -TrainTextEncoder", Assert.Throws<ArgumentException>((o with { TextEncoderLearningRate = 1e-5 }).Validate).Message);
        Assert.Contains("-StopTextEncoderTraining needs -TrainTextEncoder", Assert.Throws<ArgumentException>((o with { StopTextEncoderTraining = 10 }).Validate).Message);
        Assert.Throws<ArgumentOutOfRangeException>((Options("x", 1) with { StopTextEncoderTraining = 0 }).Validate);
    }
}
