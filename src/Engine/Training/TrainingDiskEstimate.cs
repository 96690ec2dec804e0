using DreamBooth.Engine.Pipelines;

namespace DreamBooth.Engine.Training;

/// <summary>
/// The disk a run will fill, known before it starts: its checkpoints (trained weights and optimizer state; at most
/// -CheckpointsTotalLimit of them at once) and the final pipeline folder. A full UNet checkpoint of SD-1.4 takes about
/// 10 GB with AdamW, so a long run without a limit can fill a disk hours in; Preflight refuses it up front instead.
/// </summary>
public sealed record TrainingDiskEstimate(long CheckpointBytes, int Checkpoints, long PipelineBytes)
{
    public long Bytes => CheckpointBytes * Checkpoints + PipelineBytes;

    /// <param name="startStep">the step a resumed run starts from (0 for a new run)</param>
    /// <param name="batchesPerEpoch">micro-batches per epoch (<see cref="DreamBoothDataset.BatchesPerEpoch"/>)</param>
    /// <param name="counts">the pipeline's parameter counts (<see cref="PipelineMemory.Count"/>)</param>
    public static TrainingDiskEstimate For(DreamBoothOptions o, PipelineMemory.ParameterCounts counts, int startStep, int batchesPerEpoch)
    {
        long trained = o.LoRA ? 0 : counts.Unet + (o.TrainTextEncoder ? counts.TextEncoder : 0);   // adapters: megabytes
        long moments = o.Use8BitAdam ? 2 * trained + 8 * BlockwiseQuantization.BlockCount(trained) : 8 * trained;   // 8-bit: codes + absmax
        long checkpoint = 4 * trained + moments;
        long pipeline = o.LoRA ? 0 : 4 * (counts.Unet + counts.TextEncoder + counts.Vae);            // saved in float32
        int stepsPerEpoch = (batchesPerEpoch + o.GradientAccumulationSteps - 1) / o.GradientAccumulationSteps;
        int maxSteps = o.MaxTrainSteps ?? o.NumTrainEpochs * Math.Max(1, stepsPerEpoch);
        // The periodic ones after the start: every CheckpointingSteps steps and at the end of every CheckpointingEpochs-th
        // epoch (a step both counts once); then the final one.
        long Multiples(long every) => Math.Max(0, (maxSteps - 1) / every - startStep / every);
        long written = Multiples(o.CheckpointingSteps) + 1;
        if (o.CheckpointingEpochs is int epochs)
        {
            long e = (long)epochs * Math.Max(1, stepsPerEpoch);
            written += Multiples(e) - Multiples(e / Gcd(e, o.CheckpointingSteps) * o.CheckpointingSteps);
        }
        int atOnce = (int)Math.Min(written, o.CheckpointsTotalLimit ?? int.MaxValue);
        return new TrainingDiskEstimate(checkpoint, atOnce, pipeline);
    }

    static long Gcd(long a, long b) => b == 0 ? a : Gcd(b, a % b);

    /// <summary>Throws <see cref="InsufficientDiskSpaceException"/> when the run cannot fit on the output's drive (where its free space is known).</summary>
    public static void EnsureFits(DreamBoothOptions o, PipelineMemory.ParameterCounts counts, int startStep, int batchesPerEpoch, long? freeBytes)
    {
        if (freeBytes is not long free) return;
        var need = For(o, counts, startStep, batchesPerEpoch);
        if (need.Bytes <= free) return;
        string Gb(long b) => HostMemory.Gigabytes(b);
        var fixes = new List<string>();
        if (need.Checkpoints > 1)
        {
            int fit = (int)Math.Max(0, (free - need.PipelineBytes) / Math.Max(1, need.CheckpointBytes));
            fixes.Add(fit >= 1 ? $"-CheckpointsTotalLimit {fit} keeps at most {fit} checkpoint(s)" : "-CheckpointsTotalLimit 1 keeps one checkpoint");
            fixes.Add("a larger -CheckpointingSteps saves fewer");
        }
        if (!o.LoRA) fixes.Add("-LoRA saves adapters of a few megabytes");
        if (!o.Use8BitAdam && !o.LoRA) fixes.Add("-Use8BitAdam makes each checkpoint's optimizer state four times smaller");
        throw new InsufficientDiskSpaceException(
            $"This run will write {need.Checkpoints} checkpoint(s) of {Gb(need.CheckpointBytes)} at once (trained weights and optimizer state) " +
            $"and a {Gb(need.PipelineBytes)} model, {Gb(need.Bytes)} in all, but the drive of '{o.OutputDirectory}' has {Gb(free)} free. " +
            "What needs less: " + string.Join("; ", fixes) + ". Or choose an -OutputDirectory on a larger drive.",
            need.Bytes, free);
    }
}
