using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.Autoencoders;

/// <summary>
/// diffusers <c>DiagonalGaussianDistribution</c>: the encoder's moments split into mean and logvar (clamped to [−30, 20]).
/// Owns its tensors; dispose it when done.
/// </summary>
public sealed class DiagonalGaussianDistribution : IDisposable
{
    public Tensor Mean { get; }
    public Tensor LogVar { get; }
    public Tensor Std { get; }
    public Tensor Var { get; }

    public DiagonalGaussianDistribution(Tensor parameters)
    {
        using var scope = torch.NewDisposeScope();
        var parts = parameters.chunk(2, dim: 1);
        Mean = parts[0].contiguous();
        LogVar = parts[1].clamp(-30.0, 20.0);
        Std = (0.5 * LogVar).exp();
        Var = LogVar.exp();
        scope.MoveToOuter(Mean, LogVar, Std, Var);
    }

    /// <summary>mean + std·ε with ε = randn(mean.shape) from <paramref name="generator"/> (same values as PyTorch's CPU generator).</summary>
    public Tensor Sample(Generator? generator = null)
    {
        using var scope = torch.NewDisposeScope();
        var eps = RandnTensor.Create(Mean.shape, Mean.dtype, Mean.device, generator);
        return (Mean + Std * eps).MoveToOuterDisposeScope();
    }

    public Tensor Mode() => Mean.clone();

    /// <summary>Detaches its tensors from the dispose scope it was made in, for a distribution kept beyond it.</summary>
    public DiagonalGaussianDistribution DetachFromDisposeScope()
    {
        foreach (var t in new[] { Mean, LogVar, Std, Var }) t.DetachFromDisposeScope();
        return this;
    }

    public void Dispose() { Mean.Dispose(); LogVar.Dispose(); Std.Dispose(); Var.Dispose(); }
}
