namespace DreamBooth.Engine.Sources;

/// <summary>How a tensor changes between the diffusers and the LDM layout, beyond its name.</summary>
public enum TensorTransform
{
    None,
    /// <summary>VAE mid attention: diffusers Linear [C,C] ↔ LDM 1×1 conv [C,C,1,1].</summary>
    LinearToConv1x1,
    /// <summary>OpenCLIP fused <c>in_proj</c>: the diffusers q / k / v projection is slice 0 / 1 / 2 along dim 0.</summary>
    QkvSliceQ,
    QkvSliceK,
    QkvSliceV,
}

/// <summary>
/// One renaming rule: a diffusers name prefix and its LDM counterpart. A prefix ends in '.', or is a whole key,
/// or (for the fused OpenCLIP <c>in_proj_</c>) ends where the suffix <c>weight</c>/<c>bias</c> is appended directly.
/// </summary>
public sealed record KeyRule(string Diffusers, string Ldm, TensorTransform Transform = TensorTransform.None);
