using static TorchSharp.torch;

namespace DreamBooth.Engine.Sources;

/// <summary>Choices for <see cref="LdmCheckpoint.Export"/>.</summary>
public sealed record ExportOptions
{
    /// <summary>Cast floating weights (Float16 for the usual 2 GB SD 1.x file); null keeps each tensor's dtype.</summary>
    public ScalarType? DType { get; init; }
    /// <summary>Weights that replace the folder's (a training checkpoint-N's unet / text_encoder safetensors).</summary>
    public string? UnetWeights { get; init; }
    public string? TextEncoderWeights { get; init; }
    public string? VaeWeights { get; init; }
    /// <summary>Write the text encoder in OpenCLIP (SD 2.x) layout; null decides from its config (gelu activation ⇒ SD 2.x).</summary>
    public bool? OpenClipTextEncoder { get; init; }
    /// <summary>Store the diffusers configs in the file's <c>__metadata__</c> so an import restores them exactly.</summary>
    public bool EmbedConfigs { get; init; } = true;
}

public sealed record ExportReport(string Path, string Layout, int TensorCount, long Bytes, string DType);
