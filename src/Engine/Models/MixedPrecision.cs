using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// The equivalent of <c>torch.autocast</c> (TorchSharp has none): inside <see cref="Autocast"/>, the model blocks route
/// module calls through <see cref="Forward"/>: Linear and Conv2d cast input, weight and bias to the compute dtype
/// (the casts are differentiable, so fp32 master weights get fp32 gradients), while GroupNorm/LayerNorm run on fp32 input as autocast's fp32 list does. Attention (SDPA) then runs on the low-precision
/// q/k/v as autocast runs it; its softmax accumulates in fp32 inside the kernel. The loss is computed in fp32 by the
/// caller. Outside a scope every helper is the plain module call, except that a Linear or Conv2d held in fp16/bf16 on a
/// CPU without kernels for it computes in fp32 arithmetic (see <see cref="LowPrecisionOnCpu.Emulates"/>), as it does
/// inside a scope. The scope is per thread (like autocast's state).
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
    public static IDisposable Autocast(ScalarType? dtype)
    {
        var previous = _compute;
        _compute = dtype;
        return new DisposableAction(() => _compute = previous);
    }

    /// <summary>
    /// <c>m.forward(x)</c>, autocast-style inside a scope: Linear and Conv2d compute in the low dtype, GroupNorm and
    /// LayerNorm on fp32 input; any other module runs as it is.
    /// </summary>
    public static Tensor Forward(nn.Module<Tensor, Tensor> m, Tensor x)
        => ModuleAdapters.Apply(m, x, Compute(m, x));   // adapters (LoRA) apply on both paths

    static Tensor Compute(nn.Module<Tensor, Tensor> m, Tensor x)
    {
        if (_compute is not ScalarType dt)
        {
            // A model held in fp16/bf16 (inference, frozen components) on a CPU without kernels for it.
            var held = m switch { TorchSharp.Modules.Linear l => l.weight!.dtype, TorchSharp.Modules.Conv2d c => c.weight!.dtype, _ => ScalarType.Float32 };
            return Fp32ArithmeticLayer.Handles(m) && LowPrecisionOnCpu.Emulates(x.device, held) ? Fp32ArithmeticLayer.Apply(m, x, held) : m.forward(x);
        }
        const ScalarType f32 = ScalarType.Float32;
        if (Fp32ArithmeticLayer.Handles(m) && LowPrecisionOnCpu.Emulates(x.device, dt))
            return Fp32ArithmeticLayer.Apply(m, x, dt);   // fp32 arithmetic, result rounded to dt
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

    /// <summary>
    /// scaled_dot_product_attention on q/k/v as they come (fp16/bf16 under autocast or in a low-precision model),
    /// computed in fp32 and rounded back when <paramref name="upcast"/> asks it (diffusers' upcast_attention) or the CPU
    /// has no kernels for their dtype (<see cref="LowPrecisionOnCpu.Emulates"/>). A floating mask takes q's dtype first,
    /// as autocast casts it.
    /// </summary>
    public static Tensor ScaledDotProductAttention(Tensor q, Tensor k, Tensor v, Tensor? mask = null, bool upcast = false)
    {
        var dtype = q.dtype;
        if (mask is not null && mask.is_floating_point() && mask.dtype != dtype) mask = mask.to(dtype);
        if (dtype is not (ScalarType.Float16 or ScalarType.BFloat16) || !(upcast || LowPrecisionOnCpu.Emulates(q.device, dtype)))
            return nn.functional.scaled_dot_product_attention(q, k, v, mask);
        using var scope = torch.NewDisposeScope();
        const ScalarType f32 = ScalarType.Float32;
        var attn = nn.functional.scaled_dot_product_attention(q.to(f32), k.to(f32), v.to(f32), mask?.to(f32));
        return attn.to(dtype).MoveToOuterDisposeScope();
    }
}
