namespace DreamBooth.Engine.Training;

/// <summary>What the trainer reports as it goes. Phase: "class-images", "loading", "training", "validation", "saving".</summary>
public sealed record TrainingProgress(
    string Phase, int Step, int TotalSteps, int Epoch, double? Loss, double? SmoothedLoss, double LearningRate,
    double StepsPerSecond, TimeSpan Elapsed, TimeSpan? Remaining, string? Message = null);

/// <summary>A checkpoint the trainer wrote (inference-ready: -Model accepts its folder).</summary>
public sealed record CheckpointInfo(string Path, int Step, int Epoch, double Loss, double LearningRate, DateTime Time);

/// <summary>A validation image the trainer wrote.</summary>
public sealed record ValidationImageInfo(string Path, int Step, string Prompt, long Seed);

/// <summary>The finished run: the saved pipeline folder and what produced it.</summary>
public sealed record TrainingResult(
    string OutputDirectory, int Steps, int Epochs, double FinalLoss, TimeSpan Duration, bool Completed,
    IReadOnlyList<CheckpointInfo> Checkpoints, DreamBoothOptions Options)
{
    /// <summary>Peak device memory of the run on CUDA (this process per NVML; see DeviceMemoryMonitor); null on the CPU.</summary>
    public long? PeakDeviceMemoryBytes { get; init; }
}

/// <summary>Callbacks to the caller (the cmdlet): progress, log lines and produced artefacts.</summary>
public sealed class TrainingEvents
{
    public Action<TrainingProgress>? Progress { get; init; }
    public Action<string>? Log { get; init; }
    public Action<CheckpointInfo>? CheckpointSaved { get; init; }
    public Action<ValidationImageInfo>? ValidationImage { get; init; }
    public Action<string>? Warning { get; init; }
    /// <summary>Asked before deleting old checkpoints beyond the limit (ShouldProcess); null = yes.</summary>
    public Func<string, bool>? ConfirmDelete { get; init; }
    /// <summary>
    /// Test hook: called after each accumulated backward, before unscaling/clipping, with the step index and the
    /// gradients of the trainable parameters in their order (null: none; the host copies when they are offloaded).
    /// </summary>
    internal Action<int, IReadOnlyList<TorchSharp.torch.Tensor?>>? AfterBackward { get; init; }
    /// <summary>Test hook: each micro-batch's prompts as trained (instance prompts after caption augmentation, then class prompts).</summary>
    internal Action<IReadOnlyList<string>>? BatchPrompts { get; init; }
    /// <summary>Test hook: -OffloadOptimizerState also moves gradients on the CPU (a copy there), so that path runs without a GPU.</summary>
    internal bool OffloadGradientsOnCpu { get; init; }
    /// <summary>Test hook: fixed views are encoded as the first epoch meets them and the VAE is kept (the path before they were encoded up front).</summary>
    internal bool EncodeViewsAsTheyCome { get; init; }
    /// <summary>Test hook: the run's gradient offload, when it has one, after training (for its peak figures).</summary>
    internal Action<GradientOffload>? GradientOffloadDone { get; init; }
}
