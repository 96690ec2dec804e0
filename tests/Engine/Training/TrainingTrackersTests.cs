using System.Globalization;
using DreamBooth.Engine.Tests.IO;
using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>
/// diffusers' --report_to / --logging_dir: every optimizer step's loss and learning rate, as the trainer reported them,
/// in OUTPUT/logs/dreambooth as a CSV file and a TensorBoard event file (with the validation images); a resume drops
/// the steps it repeats.
/// </summary>
[Collection(TrainingSerialCollection.Name)]
public class TrainingTrackersTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("db-trackers-").FullName;
    public void Dispose() { try { Directory.Delete(_root, true); } catch { } }

    DreamBoothOptions Options(string output, int steps) => new()
    {
        Model = Fixtures.TinySd, InstanceDataDirectory = Fixtures.InstanceImages, InstancePrompt = "a photo of sks toy",
        Resolution = 64, TrainBatchSize = 1, LearningRate = 1e-4, LearningRateScheduler = "linear",
        MaxTrainSteps = steps, CheckpointingSteps = 2, Seed = 11, OutputDirectory = Path.Combine(_root, output), Device = "cpu",
    };

    static List<(int Step, double Loss, double Lr)> Steps(List<TrainingProgress> progress) =>
        progress.Where(p => p.Phase == "training").Select(p => (p.Step, p.Loss!.Value, p.LearningRate)).ToList();

    static List<string[]> CsvRows(string directory)
    {
        var lines = File.ReadAllLines(Path.Combine(directory, TrainingTrackers.CsvFileName));
        Assert.Equal("step,epoch,loss,lr,time", lines[0]);
        return lines.Skip(1).Select(l => l.Split(',')).ToList();
    }

    [Fact]
    public void EveryStepIsLogged_AsCsvAndTensorBoard_AndAResumeDropsTheStepsItRepeats()
    {
        var progress = new List<TrainingProgress>();
        var images = new List<ValidationImageInfo>();
        var o = Options("logged", 4) with
        {
            ValidationPrompts = new[] { "a photo of sks toy" }, NumValidationImages = 1, ValidationSteps = 4, ValidationInferenceSteps = 2,
        };
        DreamBoothTrainer.Train(o, new TrainingEvents { Progress = progress.Add, ValidationImage = images.Add }, CancellationToken.None);
        var logs = TrainingTrackers.DirectoryFor(o)!;
        Assert.Equal(Path.Combine(o.OutputDirectory, "logs", "dreambooth"), logs);
        var reported = Steps(progress);
        Assert.Equal(new[] { 1, 2, 3, 4 }, reported.Select(s => s.Step));
        Assert.True(reported.Select(s => s.Lr).Distinct().Count() == 4, "the linear schedule changes the learning rate every step");

        var rows = CsvRows(logs);
        Assert.Equal(reported.Select(s => (s.Step.ToString(CultureInfo.InvariantCulture), s.Loss, s.Lr)),
            rows.Select(r => (r[0], double.Parse(r[2], CultureInfo.InvariantCulture), double.Parse(r[3], CultureInfo.InvariantCulture))));
        Assert.All(rows, r => Assert.Equal("0", r[1]));
        Assert.All(rows, r => DateTime.Parse(r[4], CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind));

        var file = Assert.Single(Directory.GetFiles(logs, "events.out.tfevents.*"));
        var events = TensorBoardEventFile.Read(file);
        Assert.Equal("brain.Event:2", events[0].FileVersion);
        Assert.Equal((0L, 1), (events[1].Step, events[1].SessionStatus!.Value));
        var scalars = events.Where(e => e.Values.Any(v => v.Scalar is not null)).ToList();
        Assert.Equal(reported.Select(s => (long)s.Step), scalars.Select(e => e.Step));
        Assert.Equal(reported.Select(s => ((float)s.Loss, (float)s.Lr)),
            scalars.Select(e => (e.Values.Single(v => v.Tag == "loss").Scalar!.Value, e.Values.Single(v => v.Tag == "lr").Scalar!.Value)));
        var image = events.Single(e => e.Values.Any(v => v.ImagePng is not null));
        Assert.Equal(4, image.Step);
        var value = Assert.Single(image.Values);
        Assert.Equal(("validation/0", 64, 64), (value.Tag, value.ImageWidth!.Value, value.ImageHeight!.Value));
        Assert.Equal(File.ReadAllBytes(Assert.Single(images).Path), value.ImagePng);

        // Resumed from checkpoint-2, steps 3 and 4 are trained again (bit for bit, as resume is exact): the CSV keeps
        // steps 1-2 and holds 3-4 once; a second event file starts its session at step 2, where TensorBoard cuts the first.
        DreamBoothTrainer.Resume(Path.Combine(o.OutputDirectory, "checkpoint-2"), 4, new TrainingEvents(), CancellationToken.None);
        var again = CsvRows(logs);
        Assert.Equal(rows.Select(r => string.Join(",", r[..4])), again.Select(r => string.Join(",", r[..4])));
        Assert.Equal(rows.Take(2).Select(r => r[4]), again.Take(2).Select(r => r[4]));   // the kept rows are the old ones
        var second = Assert.Single(Directory.GetFiles(logs, "events.out.tfevents.*"), f => f != file);
        var resumedEvents = TensorBoardEventFile.Read(second);
        Assert.Equal((2L, 1), (resumedEvents[1].Step, resumedEvents[1].SessionStatus!.Value));
        Assert.Equal(new long[] { 3, 4 }, resumedEvents.Where(e => e.Values.Any(v => v.Tag == "loss")).Select(e => e.Step));
    }

    [Fact]
    public void ReportToNone_WritesNoLogs_AndOnlineTrackersAreRefusedWithWhatToUse()
    {
        var o = Options("quiet", 1) with { ReportTo = "none" };
        DreamBoothTrainer.Train(o, new TrainingEvents(), CancellationToken.None);
        Assert.Null(TrainingTrackers.DirectoryFor(o));
        Assert.False(Directory.Exists(Path.Combine(o.OutputDirectory, "logs")));

        var e = Assert.Throws<ArgumentException>((o with { ReportTo = "wandb" }).Validate);
        Assert.Contains("tensorboard", e.Message);
        var csvOnly = Options("csv", 1) with { ReportTo = "csv", LoggingDirectory = Path.Combine(_root, "elsewhere") };
        DreamBoothTrainer.Train(csvOnly, new TrainingEvents(), CancellationToken.None);
        var logs = Path.Combine(_root, "elsewhere", "dreambooth");   // an absolute logging directory is used as it is
        Assert.Equal(logs, TrainingTrackers.DirectoryFor(csvOnly));
        Assert.Single(CsvRows(logs));
        Assert.Empty(Directory.GetFiles(logs, "events.out.tfevents.*"));
    }
}
