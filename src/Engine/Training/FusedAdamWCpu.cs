using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Training;

/// <summary>
/// AdamW updates for contiguous float32 CPU tensors in one pass over memory (what PyTorch's <c>fused=True</c> AdamW
/// does on the CPU). The tensor-op version reads and writes the 3.4 GB of an SD UNet's weights, grads and moments
/// about seventeen times per step; this reads each once and writes each once, in parallel chunks, so the step is
/// bound by one sweep of memory. Same formulas and float32 arithmetic as <see cref="AdamW"/>'s tensor path (results
/// agree to float32 rounding), and deterministic: every element is computed the same way whatever the chunking.
/// </summary>
internal static unsafe class FusedAdamWCpu
{
    /// <summary>Elements per parallel work item (a multiple of the 8-bit block size).</summary>
    const int ChunkElements = 1 << 16;

    /// <summary>Whether the fused path can update <paramref name="t"/> in place.</summary>
    public static bool Supports(Tensor t) => t.device_type == DeviceType.CPU && t.dtype == ScalarType.Float32 && t.is_contiguous()
        && t.numel() * 4 <= int.MaxValue;   // Tensor.bytes is a Span

    public readonly record struct Hyper(float Beta1, float OneMinusBeta1, float Beta2, float OneMinusBeta2, float Decay,
        float StepSize, float BiasCorrection2Sqrt, float Eps, float GradScale = 1f);

    /// <summary>
    /// PyTorch's single-tensor AdamW: p ← p·(1 − lr·wd); m ← m + (1−β₁)(g − m); v ← β₂v + (1−β₂)g²;
    /// p ← p − step · m / (√v / √(1−β₂ᵗ) + ε).
    /// </summary>
    public static void Update(Tensor param, Tensor grad, Tensor expAvg, Tensor expAvgSq, Hyper h)
    {
        long n = param.numel();
        float* p = Ptr(param), g = Ptr(grad), m = Ptr(expAvg), v = Ptr(expAvgSq);
        ForChunks(n, (start, count) => UpdateRange(p + start, g + start, m + start, v + start, count, h));
    }

    static void UpdateRange(float* p, float* g, float* m, float* v, long count, Hyper h)
    {
        long i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            int w = Vector<float>.Count;
            var b1m = new Vector<float>(h.OneMinusBeta1);
            var b2 = new Vector<float>(h.Beta2);
            var b2m = new Vector<float>(h.OneMinusBeta2);
            var decay = new Vector<float>(h.Decay);
            var bc2 = new Vector<float>(h.BiasCorrection2Sqrt);
            var eps = new Vector<float>(h.Eps);
            var step = new Vector<float>(-h.StepSize);
            var scale = new Vector<float>(h.GradScale);
            for (; i + w <= count; i += w)
            {
                var gi = Unsafe.ReadUnaligned<Vector<float>>(g + i) * scale;   // clipping's factor (×1 is exact)
                var mi = Unsafe.ReadUnaligned<Vector<float>>(m + i);
                var vi = Unsafe.ReadUnaligned<Vector<float>>(v + i);
                var pi = Unsafe.ReadUnaligned<Vector<float>>(p + i);
                mi += b1m * (gi - mi);
                vi = vi * b2 + b2m * gi * gi;
                var denom = Vector.SquareRoot(vi) / bc2 + eps;
                pi = pi * decay + step * (mi / denom);
                Unsafe.WriteUnaligned(m + i, mi);
                Unsafe.WriteUnaligned(v + i, vi);
                Unsafe.WriteUnaligned(p + i, pi);
            }
        }
        for (; i < count; i++)
        {
            float gi = g[i] * h.GradScale;
            float mi = m[i] + h.OneMinusBeta1 * (gi - m[i]);
            float vi = v[i] * h.Beta2 + h.OneMinusBeta2 * gi * gi;
            float denom = MathF.Sqrt(vi) / h.BiasCorrection2Sqrt + h.Eps;
            m[i] = mi; v[i] = vi;
            p[i] = p[i] * h.Decay + -h.StepSize * (mi / denom);
        }
    }

    /// <summary>
    /// bitsandbytes AdamW8bit (blockwise): per block of <see cref="BlockwiseQuantization.BlockSize"/> values,
    /// dequantize both moments (code[index] × absmax), update as bitsandbytes orders it (m ← β₁m + (1−β₁)g,
    /// v ← β₂v + (1−β₂)g², p ← p·(1 − lr·wd) − step · m / (√v/√(1−β₂ᵗ) + ε)), then requantize each moment with its new
    /// block absmax to the nearest code (ties to the lower index, as <see cref="BlockwiseQuantization"/> does).
    /// </summary>
    public static void Update8Bit(Tensor param, Tensor grad, Tensor mCodes, Tensor mAbsmax, Tensor vCodes, Tensor vAbsmax,
        float[] signedCode, float[] unsignedCode, Hyper h)
    {
        long n = param.numel();
        float* p = Ptr(param), g = Ptr(grad), ma = Ptr(mAbsmax), va = Ptr(vAbsmax);
        byte* mc = BytePtr(mCodes), vc = BytePtr(vCodes);
        const int block = BlockwiseQuantization.BlockSize;
        var (signedTable, unsignedTable) = Avx2.IsSupported ? (NearestCodeTable.For(signedCode), NearestCodeTable.For(unsignedCode)) : (null, null);
        ForChunks(n, (start, count) =>
        {
            float* m = stackalloc float[block];
            float* v = stackalloc float[block];
            fixed (float* sc = signedCode, uc = unsignedCode)
                for (long b0 = start; b0 < start + count; b0 += block)
                {
                    int len = (int)Math.Min(block, start + count - b0);
                    long blockIndex = b0 / block;
                    if (Avx2.IsSupported && len == block)
                        Block8BitAvx2(p + b0, g + b0, mc + b0, vc + b0, ma + blockIndex, va + blockIndex, m, v, sc, uc, signedTable!, unsignedTable!, h);
                    else
                        Block8BitScalar(p + b0, g + b0, mc + b0, vc + b0, ma + blockIndex, va + blockIndex, m, v, sc, uc, len, h);
                }
        });
    }

    static void Block8BitScalar(float* p, float* g, byte* mc, byte* vc, float* ma, float* va, float* m, float* v,
        float* sc, float* uc, int len, Hyper h)
    {
        float am = *ma, av = *va;
        float maxM = 0, maxV = 0;
        for (int j = 0; j < len; j++)
        {
            float gj = g[j] * h.GradScale;
            float mj = sc[mc[j]] * am * h.Beta1 + h.OneMinusBeta1 * gj;
            float vj = uc[vc[j]] * av * h.Beta2 + h.OneMinusBeta2 * gj * gj;
            float denom = MathF.Sqrt(vj) / h.BiasCorrection2Sqrt + h.Eps;
            p[j] = p[j] * h.Decay + -h.StepSize * (mj / denom);
            m[j] = mj; v[j] = vj;
            maxM = MathF.Max(maxM, MathF.Abs(mj)); maxV = MathF.Max(maxV, MathF.Abs(vj));
        }
        if (maxM == 0) maxM = 1;   // an all-zero block gets absmax 1
        if (maxV == 0) maxV = 1;
        *ma = maxM; *va = maxV;
        for (int j = 0; j < len; j++)
        {
            mc[j] = Nearest(sc, m[j] / maxM);
            vc[j] = Nearest(uc, v[j] / maxV);
        }
    }

    /// <summary>One full block, eight lanes at a time: the same arithmetic in the same order as the scalar path.</summary>
    static void Block8BitAvx2(float* p, float* g, byte* mc, byte* vc, float* ma, float* va, float* m, float* v,
        float* sc, float* uc, NearestCodeTable signedTable, NearestCodeTable unsignedTable, Hyper h)
    {
        const int block = BlockwiseQuantization.BlockSize;
        var am = Vector256.Create(*ma); var av = Vector256.Create(*va);
        var beta1 = Vector256.Create(h.Beta1); var b1m = Vector256.Create(h.OneMinusBeta1);
        var beta2 = Vector256.Create(h.Beta2); var b2m = Vector256.Create(h.OneMinusBeta2);
        var bc2 = Vector256.Create(h.BiasCorrection2Sqrt); var eps = Vector256.Create(h.Eps);
        var decay = Vector256.Create(h.Decay); var step = Vector256.Create(-h.StepSize); var scale = Vector256.Create(h.GradScale);
        var maxM = Vector256<float>.Zero; var maxV = Vector256<float>.Zero;
        for (int j = 0; j < block; j += 8)
        {
            var gj = Avx.LoadVector256(g + j) * scale;
            var mj = Avx2.GatherVector256(sc, Avx2.ConvertToVector256Int32(mc + j), 4) * am * beta1 + b1m * gj;
            var vj = Avx2.GatherVector256(uc, Avx2.ConvertToVector256Int32(vc + j), 4) * av * beta2 + b2m * gj * gj;
            var denom = Avx.Sqrt(vj) / bc2 + eps;
            Avx.Store(p + j, Avx.LoadVector256(p + j) * decay + step * (mj / denom));
            Avx.Store(m + j, mj); Avx.Store(v + j, vj);
            maxM = Avx.Max(maxM, Vector256.Abs(mj)); maxV = Avx.Max(maxV, Vector256.Abs(vj));
        }
        float bm = HorizontalMax(maxM), bv = HorizontalMax(maxV);
        if (bm == 0) bm = 1;   // an all-zero block gets absmax 1
        if (bv == 0) bv = 1;
        *ma = bm; *va = bv;
        var bmv = Vector256.Create(bm); var bvv = Vector256.Create(bv);
        for (int j = 0; j < block; j += 8)
        {
            StoreBytes(mc + j, signedTable.Nearest8(sc, Avx.LoadVector256(m + j) / bmv));
            StoreBytes(vc + j, unsignedTable.Nearest8(uc, Avx.LoadVector256(v + j) / bvv));
        }
    }

    static float HorizontalMax(Vector256<float> x)
    {
        float r = x.GetElement(0);
        for (int i = 1; i < 8; i++) r = MathF.Max(r, x.GetElement(i));
        return r;
    }

    /// <summary>Eight code indices (0..255) to eight bytes: two saturating packs, one 4-byte store per 128-bit half.</summary>
    static void StoreBytes(byte* destination, Vector256<int> indices)
    {
        var words = Avx2.PackSignedSaturate(indices, indices);                 // per half: i0..i3, i0..i3 as int16
        var bytes = Avx2.PackUnsignedSaturate(words, words);                    // per half: i0..i3 (×4) as bytes
        *(uint*)destination = bytes.GetLower().AsUInt32().ToScalar();
        *(uint*)(destination + 4) = bytes.GetUpper().AsUInt32().ToScalar();
    }

    /// <summary>Index of the nearest entry of a sorted 256-entry code; ties (and searchsorted's left rule) as in BlockwiseQuantization.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static byte Nearest(float* code, float x)
    {
        // First index with code[i] >= x (torch.searchsorted, left), by a branch-free binary search over 256 entries.
        int i = 0;
        for (int step = 128; step > 0; step >>= 1)
            i += code[i + step - 1] < x ? step : 0;   // a conditional move, not a branch
        int hi = Math.Min(i, 255), lo = Math.Max(hi - 1, 0);
        return (byte)(MathF.Abs(code[hi] - x) < MathF.Abs(x - code[lo]) ? hi : lo);
    }

    internal delegate void RangeAction(long start, long count);

    /// <summary>Runs <paramref name="body"/> over [0, n) in chunks of <see cref="ChunkElements"/>, on libtorch's thread count.</summary>
    internal static void ForChunks(long n, RangeAction body)
    {
        long chunks = (n + ChunkElements - 1) / ChunkElements;
        if (chunks <= 1) { if (n > 0) body(0, n); return; }
        var options = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, torch.get_num_threads()) };
        Parallel.For(0L, chunks, options, c =>
        {
            long start = c * ChunkElements;
            body(start, Math.Min(ChunkElements, n - start));
        });
    }

    // Tensor.bytes spans the tensor's own elements (storage offset included) in native memory, which never moves.
    internal static float* Ptr(Tensor t) => (float*)BytePtr(t);
    static byte* BytePtr(Tensor t) => (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));
}
