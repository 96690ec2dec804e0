using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace DreamBooth.Engine.Models;

/// <summary>
/// A Linear or Conv2d computed in fp32 arithmetic with its result rounded to a low precision, for CPUs without fp16/bf16
/// kernels (<see cref="LowPrecisionOnCpu.Emulates"/>), as one autograd node: backward keeps the input and weight as
/// they came (a bf16 activation stays bf16, the fp32 master weight is the parameter itself) and upcasts them again
/// when it runs. Composed of plain ops instead, backward would keep an fp32 copy of every low-precision input, more
/// memory than fp32 training. Gradients are computed in fp32 and handed back in each input's dtype: the input's by
/// the transposed product (conv_transpose2d for a convolution), the weight's by input × output gradient (an unfold
/// for a convolution), the bias's by a sum. Inputs and weights enter as they are: low-precision ones exactly, fp32
/// ones (the trained master weights, a norm's fp32 output) without the rounding autocast's cast would give them.
/// </summary>
internal static class Fp32ArithmeticLayer
{
    /// <summary>
    /// Whether <see cref="Apply"/> handles this module: a Linear or an ungrouped, zero-padded Conv2d (others, absent from
    /// SD models, keep libtorch's own low-precision kernels).
    /// </summary>
    public static bool Handles(nn.Module<Tensor, Tensor> m)
        => m is Linear || m is Conv2d { groups: 1, padding_mode: PaddingModes.Zeros, padding_type: null };

    /// <summary><paramref name="m"/>(<paramref name="x"/>) in fp32 arithmetic, rounded to <paramref name="dt"/>; differentiable.</summary>
    public static Tensor Apply(nn.Module<Tensor, Tensor> m, Tensor x, ScalarType dt)
    {
        var (w, b) = m switch
        {
            Linear l => (l.weight!, l.bias),
            Conv2d c => (c.weight!, c.bias),
            _ => throw new ArgumentException($"No fp32 path for {m.GetType().Name}.", nameof(m)),
        };
        var geometry = m is Conv2d conv ? new ConvGeometry(conv.stride, conv.padding!, conv.dilation) : null;
        if (!torch.is_grad_enabled() || !(x.requires_grad || w.requires_grad || (b?.requires_grad ?? false)))
            return Rounded(geometry, dt, x, w, b);
        object[] args = b is null ? [geometry!, dt, x, w] : [geometry!, dt, x, w, b];
        return Function.apply(args)[0];
    }

    sealed record ConvGeometry(long[] Stride, long[] Padding, long[] Dilation);

    /// <summary>The layer on fp32 copies of its operands, the result rounded to <paramref name="dt"/>.</summary>
    static Tensor Rounded(ConvGeometry? g, ScalarType dt, Tensor x, Tensor w, Tensor? b)
    {
        using var scope = torch.NewDisposeScope();
        const ScalarType f32 = ScalarType.Float32;
        var (x32, w32, b32) = (x.to(f32), w.to(f32), b?.to(f32));
        var y = g is null ? nn.functional.linear(x32, w32, b32) : nn.functional.conv2d(x32, w32, b32, g.Stride, g.Padding, g.Dilation);
        return y.to(dt).MoveToOuterDisposeScope();
    }

    sealed class Function : MultiTensorFunction<Function>
    {
        public override string Name => nameof(Fp32ArithmeticLayer);

        // vars: [ConvGeometry or null (Linear), result dtype, x, w, b?]
        public override List<Tensor> forward(AutogradContext ctx, params object[] vars)
        {
            var geometry = vars[0] as ConvGeometry;
            var dt = (ScalarType)vars[1];
            var x = (Tensor)vars[2];
            var w = (Tensor)vars[3];
            var b = vars.Length > 4 ? (Tensor)vars[4] : null;
            ctx.save_data("geometry", geometry!);
            ctx.save_data("needs", new[] { x.requires_grad, w.requires_grad, b?.requires_grad ?? false });
            ctx.save_data("bias", b is null ? null! : (object)b.dtype);
            ctx.save_data("callbacks", AutogradCallbacks.Current);
            ctx.save_for_backward([x, w]);
            return [Rounded(geometry, dt, x, w, b)];
        }

        public override List<Tensor> backward(AutogradContext ctx, List<Tensor> gradOutputs)
        {
            var needs = (bool[])ctx.get_data("needs");
            var biasDType = ctx.get_data("bias") as ScalarType?;
            var result = new List<Tensor> { null!, null! };   // geometry, dtype
            var callbacks = (AutogradCallbacks)ctx.get_data("callbacks");
            try
            {
                callbacks.ReleaseEarlierOnThisThread();
                var geometry = ctx.get_data("geometry") as ConvGeometry;
                using var scope = torch.NewDisposeScope();
                scope.Attach(gradOutputs);
                var saved = ctx.get_saved_variables();
                var (x, w) = (saved[0], saved[1]);
                scope.Attach(saved);
                var g = gradOutputs[0].to(ScalarType.Float32);
                var x32 = x.to(ScalarType.Float32);
                var w32 = w.to(ScalarType.Float32);
                Tensor? dx = null, dw = null, db = null;
                if (geometry is null)
                {
                    long outF = w.shape[0], inF = w.shape[1];
                    var g2 = g.reshape(-1, outF);
                    if (needs[0]) dx = g.matmul(w32).to(x.dtype);
                    if (needs[1]) dw = g2.t().mm(x32.reshape(-1, inF)).to(w.dtype);
                    if (needs[2]) db = g2.sum(new long[] { 0 })   /* sum(0) would bind to sum(ScalarType) */.to(biasDType!.Value);
                }
                else
                {
                    if (needs[0]) dx = ConvInputGradient(geometry, g, w32, x.shape).to(x.dtype);
                    if (needs[1]) dw = ConvWeightGradient(geometry, g, x32, w.shape).to(w.dtype);
                    if (needs[2]) db = g.sum([0, 2, 3]).to(biasDType!.Value);
                }
                foreach (var t in new[] { dx, dw }.Concat(biasDType is null ? [] : new[] { db }))
                {
                    if (t is not null) { scope.Detach(t); callbacks.HandBack(t); }
                    result.Add(t!);
                }
            }
            catch (Exception e)
            {
                callbacks.Stash(e);
                result = [null!, null!, null!, null!];
                if (biasDType is not null) result.Add(null!);
            }
            return result;
        }

        /// <summary>conv2d's input gradient: the transposed convolution, with the output padding that restores the size.</summary>
        static Tensor ConvInputGradient(ConvGeometry c, Tensor g, Tensor w, long[] inputShape)
        {
            var outputPadding = new long[2];
            for (int d = 0; d < 2; d++)
            {
                long k = w.shape[2 + d], produced = (g.shape[2 + d] - 1) * c.Stride[d] - 2 * c.Padding[d] + c.Dilation[d] * (k - 1) + 1;
                outputPadding[d] = inputShape[2 + d] - produced;
            }
            return nn.functional.conv_transpose2d(g, w, null, c.Stride, c.Padding, outputPadding, c.Dilation, 1);
        }

        /// <summary>conv2d's weight gradient: output gradient × the input's patches (unfold), summed over the batch.</summary>
        static Tensor ConvWeightGradient(ConvGeometry c, Tensor g, Tensor x, long[] weightShape)
        {
            long n = g.shape[0], outC = g.shape[1], positions = g.shape[2] * g.shape[3];
            long kh = weightShape[2], kw = weightShape[3];
            bool pointwise = kh == 1 && kw == 1 && c.Stride.All(s => s == 1) && c.Padding.All(p => p == 0);
            var patches = pointwise
                ? x.reshape(n, x.shape[1], positions)
                : nn.functional.unfold(x, (kh, kw), (c.Dilation[0], c.Dilation[1]), (c.Padding[0], c.Padding[1]), (c.Stride[0], c.Stride[1]));
            return g.reshape(n, outC, positions).bmm(patches.transpose(1, 2)).sum(new long[] { 0 }).view(weightShape);
        }
    }
}
