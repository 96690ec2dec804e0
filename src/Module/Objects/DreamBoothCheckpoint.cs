namespace DreamBooth;

/// <summary>A training checkpoint folder (inference-ready: pass it to Invoke-DreamBoothInference -Model).</summary>
public sealed class DreamBoothCheckpoint
{
    public string Path { get; init; } = "";
    public int Step { get; init; }
    public int Epoch { get; init; }
    public double Loss { get; init; }
    public double LearningRate { get; init; }
    public DateTime Time { get; init; }
    public override string ToString() => Path;
}

/// <summary>The pipeline folder a finished (or stopped) training run leaves: loads in diffusers and in this module.</summary>
public sealed class DreamBoothModel
{
    public string Path { get; init; } = "";
    public int Steps { get; init; }
    public int Epochs { get; init; }
    public double FinalLoss { get; init; }
    public TimeSpan Duration { get; init; }
    public bool Completed { get; init; }
    public string BaseModel { get; init; } = "";
    public string InstancePrompt { get; init; } = "";
    public DreamBoothCheckpoint[] Checkpoints { get; init; } = Array.Empty<DreamBoothCheckpoint>();
    /// <summary>On CUDA: the most device memory the run held (this process per NVML, as nvidia-smi shows it), in GiB; null on the CPU.</summary>
    public double? PeakDeviceMemoryGB { get; init; }
    /// <summary>Where the run logged each step's loss and learning rate (training_log.csv, a TensorBoard event file); null with -ReportTo none.</summary>
    public string? LogDirectory { get; init; }
    /// <summary>Every setting of the run, as the engine stored it.</summary>
    public System.Collections.Hashtable Settings { get; init; } = new();
    public override string ToString() => Path;
}
