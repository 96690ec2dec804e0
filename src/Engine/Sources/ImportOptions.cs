using static TorchSharp.torch;

namespace DreamBooth.Engine.Sources;

/// <summary>Choices for <see cref="LdmCheckpoint.Import"/>. Null means: infer, or use the SD 1.x/2.x convention (and say so in the report).</summary>
public sealed record ImportOptions
{
    /// <summary>Training/inference image size (SD 1.x 512, SD 2.x 768); sets unet/vae <c>sample_size</c>.</summary>
    public int? ImageSize { get; init; }
    /// <summary><c>epsilon</c> or <c>v_prediction</c> (SD 2.x 768 models are v-prediction). Not visible in the weights.</summary>
    public string? PredictionType { get; init; }
    /// <summary>diffusers' <c>attention_head_dim</c> (heads per level, or one value for all).</summary>
    public int[]? AttentionHeadDim { get; init; }
    public int? TextEncoderHeads { get; init; }
    public bool? UpcastAttention { get; init; }
    public double? VaeScalingFactor { get; init; }
    /// <summary>A CLIP tokenizer folder (vocab.json, merges.txt, …) to copy; a single file holds none.</summary>
    public string? TokenizerFolder { get; init; }
    /// <summary>
    /// <see cref="TokenizerFolder"/> is CLIP ViT-L/14's, found by the engine rather than chosen for this model: on an SD 2.x
    /// file its pad token becomes SD 2.x's "!" (an SD 2.x tokenizer is that vocabulary with that pad token). Otherwise a
    /// tokenizer that pads unlike SD 2.x only gets a warning.
    /// </summary>
    public bool TokenizerIsClipStandIn { get; init; }
    /// <summary>Cast floating weights on import (null keeps the file's dtype).</summary>
    public ScalarType? DType { get; init; }
    /// <summary>Use configs that <see cref="LdmCheckpoint.Export"/> embedded in the file's metadata for the values shapes cannot tell.</summary>
    public bool UseEmbeddedConfigs { get; init; } = true;
    /// <summary>Replace an existing destination folder's files.</summary>
    public bool Overwrite { get; init; }
}

/// <summary>What an import found and decided.</summary>
public sealed record ImportReport(
    string Destination,
    string Layout,
    IReadOnlyList<string> Inferred,
    IReadOnlyList<string> IgnoredKeys,
    IReadOnlyList<string> Warnings,
    int TensorCount);
