using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// The equivalent of <c>torch.autocast</c> (TorchSharp has none): inside <see cref="Autocast"/>, the model blocks route
/// module calls through <see cref="Forward"/>: Linear and Conv2d cast input, weight and bias to the compute dtype
/// (the casts are differentiable, so fp32 master weights get fp32 gradients), while GroupNorm/LayerNorm run on fp32 input as autocast's fp32 list does. Attention (SDPA) then runs on the low-precision
/// q/k/v as autocast runs it; its softmax accumulates in fp32 inside the kernel. The loss is computed in fp32 by the
/// caller. Outside a scope every helper is the plain module call. The scope is per thread (like autocast's state).
/// </summary>
public static class MixedPrecision
{
    [ThreadStatic] static ScalarType? _compute;

    /// <summary>The active compute dtype, or null outside an autocast scope.</summary>
    public static ScalarType? ComputeDType => _compute;

    /// <summary>The compute dtype for a -MixedPrecision value: fp16, bf16, or null for "no".</summary>
    public static ScalarType? Parse(string mixedPrecision) => mixedPrecision switch
    {
        "fp16" => ScalarType.Float16,
        "bf16" => ScalarType.BFloat16,
        _ => null,
    };

    /// <summary>Enters an autocast scope (null = plain fp32); dispose to restore the previous state.</summary>
    public static IDisposable Autocast(ScalarType? dtype) => new Scope(dtype);

    sealed class Scope : IDisposable
    {
        readonly ScalarType? _previous;
        public Scope(ScalarType? dtype) { _previous = _compute; _compute = dtype; }
        public void Dispose() => _compute = _previous;
    }

    /// <summary>
    /// <c>m.forward(x)</c>, autocast-style inside a scope: Linear and Conv2d compute in the low dtype, GroupNorm and
    /// LayerNorm on fp32 input; any other module runs as it is.
    /// </summary>
    public static Tensor Forward(nn.Module<Tensor, Tensor> m, Tensor x)
        => ModuleAdapters.Apply(m, x, Compute(m, x));   // adapters (LoRA) apply on both paths

    static Tensor Compute(nn.Module<Tensor, Tensor> m, Tensor x)
    {
        if (_compute is not ScalarType dt) return m.forward(x);
        const ScalarType f32 = ScalarType.Float32;
        return m switch
        {
            TorchSharp.Modules.Linear l => nn.functional.linear(x.to(dt), l.weight!.to(dt), l.bias?.to(dt)),
            TorchSharp.Modules.Conv2d c => nn.functional.conv2d(x.to(dt), c.weight!.to(dt), c.bias?.to(dt), c.stride, c.padding, c.dilation, c.groups),
            // Norms run in fp32 on fp32 input and parameters, whatever dtype a frozen model is held in.
            GroupNorm g when g.weight is null || g.weight.dtype == f32 => g.forward(x.to(f32)),
            GroupNorm g => nn.functional.group_norm(x.to(f32), g.num_groups, g.weight!.to(f32), g.bias?.to(f32), g.eps),
            LayerNorm n when n.weight is null || n.weight.dtype == f32 => n.forward(x.to(f32)),
            LayerNorm n => nn.functional.layer_norm(x.to(f32), n.normalized_shape, n.weight!.to(f32), n.bias?.to(f32), n.eps),
            _ => m.forward(x),
        };
    }
}
