using System.Numerics;
using System.Runtime.CompilerServices;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Training;

/// <summary>
/// GradScaler's unscale and inf/NaN check of a contiguous float32 CPU gradient in one parallel pass over memory,
/// instead of libtorch's <c>mul_</c> then <c>isfinite(g).all()</c> (two passes and a boolean tensor the size of the
/// gradient). Offloaded fp16 training runs this over all 3.2 GB of an SD UNet's host gradients every step. The same
/// float32 products as <c>mul_</c>, so the gradients are bit for bit what the tensor path leaves.
/// </summary>
internal static unsafe class FusedUnscaleCpu
{
    public static bool Supports(Tensor g) => FusedAdamWCpu.Supports(g);

    /// <summary>g ← g × <paramref name="invScale"/> in place; true when every product is finite.</summary>
    public static bool UnscaleAndCheckFinite(Tensor g, float invScale)
    {
        float* data = FusedAdamWCpu.Ptr(g);
        int nonFinite = 0;
        FusedAdamWCpu.ForChunks(g.numel(), (start, count) =>
        {
            if (!UnscaleRange(data + start, count, invScale)) Volatile.Write(ref nonFinite, 1);
        });
        return Volatile.Read(ref nonFinite) == 0;
    }

    static bool UnscaleRange(float* x, long count, float invScale)
    {
        long i = 0;
        bool finite = true;
        if (Vector.IsHardwareAccelerated)
        {
            int w = Vector<float>.Count;
            var scale = new Vector<float>(invScale);
            // x − x is 0 for every finite x and NaN for ±inf and NaN, so all-zero differences mean all finite.
            var diff = Vector<float>.Zero;
            for (; i + w <= count; i += w)
            {
                var v = Unsafe.ReadUnaligned<Vector<float>>(x + i) * scale;
                Unsafe.WriteUnaligned(x + i, v);
                diff += v - v;
            }
            finite = Vector.EqualsAll(diff, Vector<float>.Zero);
        }
        for (; i < count; i++)
        {
            x[i] *= invScale;
            finite &= float.IsFinite(x[i]);
        }
        return finite;
    }
}
