using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// Shared by a model and its blocks: whether to recompute activations in backward, which ones, and the function that
/// does it. Two granularities:
/// <list type="bullet">
/// <item>Blocks (diffusers' <c>gradient_checkpointing</c>): whole resnets and transformer blocks are recomputed; the
/// blocks call <see cref="Run"/> where diffusers calls <c>torch.utils.checkpoint.checkpoint</c>. Saves the most
/// memory; the recompute costs about one more forward.</item>
/// <item><see cref="Selective"/>: only the parts that are cheap to recompute and large to keep, inside the blocks
/// (<see cref="RunSegment"/>): a resnet's GroupNorm + activation pairs, a transformer block's LayerNorm + GEGLU
/// projection. Convolutions, attention and the other projections keep their saved outputs (the idea of PyTorch's
/// selective activation checkpointing). Saves less memory for a small fraction of the recompute.</item>
/// </list>
/// With checkpointing off, or grad disabled, every function runs directly.
/// </summary>
public sealed class GradientCheckpointing
{
    public bool Enabled { get; set; }

    /// <summary>Recompute the cheap parts inside blocks (<see cref="RunSegment"/>) instead of whole blocks (<see cref="Run"/>).</summary>
    public bool Selective { get; set; }

    /// <summary>Runs fn(inputs) so that its intermediates are recomputed in backward (e.g. a reentrant checkpoint function).</summary>
    public Func<Func<Tensor[], Tensor[]>, Tensor[], Tensor[]>? Runner { get; set; }

    /// <summary>A whole resnet or transformer block: checkpointed unless off or selective.</summary>
    public Tensor Run(Func<Tensor[], Tensor[]> fn, params Tensor[] inputs)
        => Enabled && !Selective ? Checkpoint(fn, inputs) : fn(inputs)[0];

    /// <summary>A cheap, memory-heavy part inside a block: checkpointed in selective mode only.</summary>
    public Tensor RunSegment(Func<Tensor[], Tensor[]> fn, params Tensor[] inputs)
        => Enabled && Selective ? Checkpoint(fn, inputs) : fn(inputs)[0];

    Tensor Checkpoint(Func<Tensor[], Tensor[]> fn, Tensor[] inputs)
    {
        if (!torch.is_grad_enabled()) return fn(inputs)[0];
        if (Runner is null)
            throw new InvalidOperationException("GradientCheckpointing is enabled but no CheckpointRunner is set on the model.");
        return Runner(fn, inputs)[0];
    }
}
