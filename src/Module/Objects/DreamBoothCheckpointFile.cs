namespace DreamBooth;

/// <summary>What Import-DreamBoothCheckpoint made of a single-file checkpoint: the diffusers folder and what it inferred.</summary>
public sealed class DreamBoothImportResult
{
    public string Path { get; init; } = "";
    public string Source { get; init; } = "";
    public string Layout { get; init; } = "";
    public int TensorCount { get; init; }
    /// <summary>Settings the weights could not tell, and the value chosen (pass the matching parameter to override).</summary>
    public string[] Inferred { get; init; } = Array.Empty<string>();
    public string[] IgnoredKeys { get; init; } = Array.Empty<string>();
    public string[] Warnings { get; init; } = Array.Empty<string>();
    public override string ToString() => Path;
}

/// <summary>The single-file checkpoint Export-DreamBoothCheckpoint wrote.</summary>
public sealed class DreamBoothExportResult
{
    public string Path { get; init; } = "";
    public string Model { get; init; } = "";
    public string Layout { get; init; } = "";
    public int TensorCount { get; init; }
    public long Bytes { get; init; }
    public double SizeMB => Math.Round(Bytes / 1048576.0, 1);
    public string DType { get; init; } = "";
    public override string ToString() => Path;
}
