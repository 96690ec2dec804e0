using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// Shared by a model and its blocks: whether to recompute resnets/transformer blocks in backward
/// (diffusers' <c>gradient_checkpointing</c>), and the function that does it. Blocks call <see cref="Run"/>
/// where diffusers calls <c>torch.utils.checkpoint.checkpoint</c>; with checkpointing off, or grad disabled,
/// the function runs directly.
/// </summary>
public sealed class GradientCheckpointing
{
    public bool Enabled { get; set; }

    /// <summary>Runs fn(inputs) so that its intermediates are recomputed in backward (e.g. a reentrant checkpoint function).</summary>
    public Func<Func<Tensor[], Tensor[]>, Tensor[], Tensor[]>? Runner { get; set; }

    public Tensor Run(Func<Tensor[], Tensor[]> fn, params Tensor[] inputs)
    {
        if (!Enabled || !torch.is_grad_enabled()) return fn(inputs)[0];
        if (Runner is null)
            throw new InvalidOperationException("GradientCheckpointing is enabled but no CheckpointRunner is set on the model.");
        return Runner(fn, inputs)[0];
    }
}
