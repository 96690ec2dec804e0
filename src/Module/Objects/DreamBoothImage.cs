namespace DreamBooth;

/// <summary>An image written by Invoke-DreamBoothInference, New-DreamBoothClassImage or validation during training.</summary>
public sealed class DreamBoothImage
{
    public string Path { get; init; } = "";
    public string Prompt { get; init; } = "";
    public string NegativePrompt { get; init; } = "";
    public long Seed { get; init; }
    public int Steps { get; init; }
    public double GuidanceScale { get; init; }
    /// <summary>diffusers' guidance_rescale (0: none).</summary>
    public double GuidanceRescale { get; init; }
    public string Scheduler { get; init; } = "";
    public int Width { get; init; }
    public int Height { get; init; }
    public string Model { get; init; } = "";
    public TimeSpan Duration { get; init; }
    /// <summary>Image-to-image: the picture it started from, and how far it moved from it (0 to 1); null for text to image.</summary>
    public string? InitImage { get; init; }
    public double? Strength { get; init; }
    /// <summary>Inpainting: the mask whose white area was painted anew; null otherwise.</summary>
    public string? MaskImage { get; init; }
    /// <summary>The training step that produced it (validation images only).</summary>
    public int? TrainingStep { get; init; }
    public override string ToString() => Path;
}
