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
        using var scope = torch.NewDisposeScope();
        var grads = new List<Tensor>();
        foreach (var p in parameters)
        {
            var g = p.grad;
            if (g is not null) grads.Add(g);
        }
        if (grads.Count == 0) return 0.0;

        var first = grads[0].device;
        var norms = grads.Select(g => torch.linalg.vector_norm(g, 2).to(ScalarType.Float32, first)).ToArray();
        var total = torch.linalg.vector_norm(torch.stack(norms), 2);
        // Same float32 arithmetic as PyTorch, so the applied coefficient is bit-identical.
        var coef = torch.clamp(maxNorm / (total + 1e-6), max: 1.0);
        double totalNorm = total.item<float>();
        if (!double.IsFinite(totalNorm)) return totalNorm;
        if (maxNorm / (totalNorm + 1e-6) < 1.0)
            foreach (var g in grads)
                using (torch.no_grad()) g.mul_(coef.to(g.device));
        return totalNorm;
    }
}
