using DreamBooth.Engine.IO;
using DreamBooth.Engine.Pipelines;
using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>Preflight's disk check: the checkpoints a run keeps at once and the final model, against the drive's free space.</summary>
public class TrainingDiskEstimateTests
{
    static DreamBoothOptions Options => new()
    {
        Model = Fixtures.TinySd, InstanceDataDirectory = ".", InstancePrompt = "a photo of sks toy", OutputDirectory = ".",
        MaxTrainSteps = 1000, CheckpointingSteps = 100,
    };

    [Fact]
    public void CountsCheckpointsAtOnce_AndTheirBytes()
    {
        var source = PipelineMemory.Count(ModelSource.Resolve(Fixtures.TinySd));
        var c = source;
        var e = TrainingDiskEstimate.For(Options, source, startStep: 0, batchesPerEpoch: 4);
        Assert.Equal(10, e.Checkpoints);                         // steps 100…900 and the final one at 1000
        Assert.Equal(12 * c.Unet, e.CheckpointBytes);            // float32 weights + AdamW's two moments
        Assert.Equal(4 * c.Total, e.PipelineBytes);
        Assert.Equal(3, TrainingDiskEstimate.For(Options with { CheckpointsTotalLimit = 3 }, source, 0, 4).Checkpoints);
        Assert.Equal(5, TrainingDiskEstimate.For(Options, source, startStep: 500, batchesPerEpoch: 4).Checkpoints);   // a resume at 500
        Assert.Equal(6 * c.Unet + 8 * BlockwiseQuantization.BlockCount(c.Unet), TrainingDiskEstimate.For(Options with { Use8BitAdam = true }, source, 0, 4).CheckpointBytes);
        Assert.Equal(12 * (c.Unet + c.TextEncoder), TrainingDiskEstimate.For(Options with { TrainTextEncoder = true }, source, 0, 4).CheckpointBytes);
        var lora = TrainingDiskEstimate.For(Options with { LoRA = true }, source, 0, 4);
        Assert.Equal(0, lora.Bytes);                             // adapters only: megabytes, left out
        // Without -MaxTrainSteps: epochs × steps per epoch (4 batches → 4 steps an epoch; 2 epochs → 8, one final checkpoint).
        Assert.Equal(1, TrainingDiskEstimate.For(Options with { MaxTrainSteps = null, NumTrainEpochs = 2 }, source, 0, 4).Checkpoints);
        // -CheckpointingEpochs 3 at 40 steps an epoch: steps 120, 240, ... 960 beside 100 ... 900; 600 is both, counted once.
        Assert.Equal(9 + 8 - 1 + 1, TrainingDiskEstimate.For(Options with { CheckpointingEpochs = 3 }, source, 0, 40).Checkpoints);
        // resumed at 500: 600 ... 900 and 600, 720, 840, 960 (600 once), and the final one.
        Assert.Equal(4 + 4 - 1 + 1, TrainingDiskEstimate.For(Options with { CheckpointingEpochs = 3 }, source, startStep: 500, batchesPerEpoch: 40).Checkpoints);
    }

    [Fact]
    public void ARunThatCannotFit_IsRefused_WithAHowManyCheckpointsFit()
    {
        var source = PipelineMemory.Count(ModelSource.Resolve(Fixtures.TinySd));
        var need = TrainingDiskEstimate.For(Options, source, 0, 4);
        TrainingDiskEstimate.EnsureFits(Options, source, 0, 4, need.Bytes);
        TrainingDiskEstimate.EnsureFits(Options, source, 0, 4, null);
        long free = need.PipelineBytes + 3 * need.CheckpointBytes + 1;
        var e = Assert.Throws<InsufficientDiskSpaceException>(() => TrainingDiskEstimate.EnsureFits(Options, source, 0, 4, free));
        Assert.Contains("-CheckpointsTotalLimit 3", e.Message);
        Assert.Contains("10 checkpoint(s)", e.Message);
        TrainingDiskEstimate.EnsureFits(Options with { CheckpointsTotalLimit = 3 }, source, 0, 4, free);   // what it suggests fits
    }

    [Fact]
    public void TheDrivesFreeSpace_IsKnownForAFolderThatDoesNotExistYet()
    {
        var free = DiskSpace.FreeBytes(Path.Combine(Path.GetTempPath(), "no-such-folder-" + Guid.NewGuid().ToString("N"), "out"));
        Assert.NotNull(free);
        Assert.True(free > 0);
    }
}
