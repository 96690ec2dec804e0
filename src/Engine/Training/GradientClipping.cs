using TorchSharp;
using static TorchSharp.torch;
using TorchSharp.Modules;

namespace DreamBooth.Engine.Training;

/// <summary><c>torch.nn.utils.clip_grad_norm_</c> (L2): total = ‖(‖g₁‖, ‖g₂‖, …)‖, coef = max/(total+1e-6), clamped at 1.</summary>
public static class GradientClipping
{
    /// <summary>
    /// Scales all gradients in place so their global L2 norm is at most <paramref name="maxNorm"/> and returns the norm
    /// before clipping. Parameters without a gradient are ignored (0 when none has one). A non-finite total is
    /// returned as is and no gradient is touched (PyTorch would multiply by NaN), so the caller can skip the step.
    /// </summary>
    public static double ClipGradNorm(IEnumerable<Parameter> parameters, double maxNorm)
    {
        using var scope = torch.NewDisposeScope();   // the handles p.grad returns keep their storage alive until disposed
        var grads = parameters.Select(p => p.grad).OfType<Tensor>().ToList();
        var (totalNorm, coefficient) = ClipCoefficientOfGradients(grads, maxNorm);
        if (coefficient != 1f)
            using (torch.no_grad())
                foreach (var g in grads) g.mul_(coefficient);   // float32 × float32, as PyTorch's mul_ by its float32 coefficient
        return totalNorm;
    }

    /// <summary>
    /// The global L2 norm of the gradients and the float32 factor <see cref="ClipGradNorm"/> would scale them by
    /// (1 when the norm is within <paramref name="maxNorm"/> or not finite), without touching them: an optimizer that
    /// reads each gradient once anyway applies the factor there (<see cref="AdamW.Step(double, float)"/>), which saves
    /// a read-and-write pass over all gradients.
    /// </summary>
    public static (double TotalNorm, float Coefficient) ClipCoefficient(IEnumerable<Parameter> parameters, double maxNorm)
    {
        // Each p.grad is a new handle that keeps the gradient's storage alive until disposed: left to the finalizer,
        // gradients released afterwards (-SetGradsToNone) would stay resident into the next backward (+3.4 GB on SD-1.4).
        using var scope = torch.NewDisposeScope();
        return ClipCoefficientOfGradients(parameters.Select(p => p.grad).OfType<Tensor>().ToList(), maxNorm);
    }

    /// <summary><see cref="ClipCoefficient(IEnumerable{Parameter}, double)"/> of given gradients (e.g. host copies).</summary>
    public static (double TotalNorm, float Coefficient) ClipCoefficientOfGradients(IReadOnlyList<Tensor> grads, double maxNorm)
    {
        if (grads.Count == 0) return (0.0, 1f);
        using var scope = torch.NewDisposeScope();
        var first = grads[0].device;
        var norms = grads.Select(g => torch.linalg.vector_norm(g, 2).to(ScalarType.Float32, first)).ToArray();
        var total = torch.linalg.vector_norm(torch.stack(norms), 2);
        // Same float32 arithmetic as PyTorch, so the coefficient is bit-identical to the one it multiplies by.
        var coef = torch.clamp(maxNorm / (total + 1e-6), max: 1.0);
        double totalNorm = total.item<float>();
        if (!double.IsFinite(totalNorm) || maxNorm / (totalNorm + 1e-6) >= 1.0) return (totalNorm, 1f);
        return (totalNorm, coef.item<float>());
    }
}
