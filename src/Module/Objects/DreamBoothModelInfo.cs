namespace DreamBooth;

/// <summary>What a model folder holds, as Get-DreamBoothModel reads it from configs and headers (no weights loaded).</summary>
public sealed class DreamBoothModelInfo
{
    public string Path { get; init; } = "";
    public string Name => System.IO.Path.GetFileName(Path.TrimEnd('/', '\\'));
    /// <summary>pipeline, training output, checkpoint or LoRA.</summary>
    public string Kind { get; init; } = "";
    public string BaseModel { get; init; } = "";
    /// <summary>SD 1.x or SD 2.x (from the UNet's cross-attention width).</summary>
    public string Family { get; init; } = "";
    /// <summary>The default image side (pass it as -Resolution to train at the model's own size).</summary>
    public int Resolution { get; init; }
    public string PredictionType { get; init; } = "";
    public bool Inpainting { get; init; }
    /// <summary>How the UNet's weights are stored: fp32, fp16 or bf16.</summary>
    public string Precision { get; init; } = "";
    public string Scheduler { get; init; } = "";
    public int TextEncoderLayers { get; init; }
    public long UnetParameters { get; init; }
    public long TextEncoderParameters { get; init; }
    public long VaeParameters { get; init; }
    public double SizeGB { get; init; }
    public override string ToString() => Path;
}
