using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace DreamBooth.Engine.Training;

/// <summary>
/// Nearest entry of a sorted 256-value quantization code (the dynamic maps of <see cref="BlockwiseQuantization"/>)
/// in one table lookup instead of an 8-step binary search. The table is indexed by a float's sign, exponent and top
/// <see cref="MantissaBits"/> mantissa bits; each bucket is narrower than the gap between neighbouring codes, so it
/// holds at most one code, and the table stores how many codes lie below the bucket. One comparison with that code
/// then gives exactly the binary search's count of codes below x (torch.searchsorted, left), and the same
/// nearest-of-two choice follows: the results are identical, which <see cref="Build"/> checks for the code it gets.
/// Values of magnitude below 2^-<see cref="LowExponents"/> share one bucket (the codes nearest zero are ~1e-7 apart
/// from it); magnitudes of 2 and more, and NaN, take the binary search.
/// </summary>
internal sealed unsafe class NearestCodeTable
{
    public const int MantissaBits = 7;
    public const int LowExponents = 30;
    const int BucketsPerSign = 1 + ((LowExponents + 1) << MantissaBits);   // the shared low bucket, then 2^-30 ≤ |x| < 2

    readonly byte* _below;   // codes below each bucket (0..255); 3 bytes of padding for 32-bit gathers

    NearestCodeTable(byte* below) => _below = below;

    static readonly ConditionalWeakTable<float[], NearestCodeTable> s_tables = new();

    /// <summary>The table for <paramref name="code"/> (sorted, 256 distinct values), built once per array.</summary>
    public static NearestCodeTable For(float[] code) => s_tables.GetValue(code, Build);

    static NearestCodeTable Build(float[] code)
    {
        if (code.Length != 256) throw new ArgumentException("the code must have 256 entries", nameof(code));
        int Count(Func<float, bool> predicate) => code.Count(predicate);
        var below = (byte*)NativeMemory.Alloc((nuint)(2 * BucketsPerSign + 3));   // lives as long as the process, as the codes do
        for (int sign = 0; sign < 2; sign++)
            for (int key = 0; key < BucketsPerSign; key++)
            {
                // The bucket's magnitudes [lo, hi); the shared low bucket is [0, 2^-LowExponents).
                float lo = key == 0 ? 0f : BitConverter.Int32BitsToSingle(((127 - LowExponents) << 23) + ((key - 1) << (23 - MantissaBits)));
                float hi = BitConverter.Int32BitsToSingle(((127 - LowExponents) << 23) + (key << (23 - MantissaBits)));
                // Positive x in [lo, hi); negative x in (-hi, -lo].
                int under = sign == 0 ? Count(c => c < lo) : Count(c => c <= -hi);
                int inside = sign == 0 ? Count(c => c >= lo && c < hi) : Count(c => c > -hi && c <= -lo);
                if (inside > 1)
                    throw new InvalidOperationException($"code entries closer than a {MantissaBits}-bit bucket near {(sign == 0 ? lo : -lo)}");
                // Above the last code (1 < |x| < 2) all 256 are below: store 255, whose comparison adds the 256th.
                below[sign * BucketsPerSign + key] = (byte)Math.Min(under, 255);
            }
        return new NearestCodeTable(below);
    }

    /// <summary>The nearest code index for eight values; <see cref="NearestBinarySearch"/>'s result, lane by lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<int> Nearest8(float* code, Vector256<float> x)
    {
        var bits = x.AsInt32();
        var magnitude = bits & Vector256.Create(0x7FFFFFFF);
        if (!Avx.TestZ(Avx2.CompareGreaterThan(magnitude, Vector256.Create(0x3FFFFFFF)), Vector256<int>.AllBitsSet))
            return NearestBinarySearch(code, x);   // |x| ≥ 2 or NaN in some lane
        var key = Avx2.Max(Avx2.ShiftRightLogical(magnitude, 23 - MantissaBits) - Vector256.Create(((127 - LowExponents) << MantissaBits) - 1), Vector256<int>.Zero);
        var index = key + (Avx2.ShiftRightArithmetic(bits, 31) & Vector256.Create(BucketsPerSign));
        var under = Avx2.GatherVector256((int*)_below, index, 1) & Vector256.Create(0xFF);
        var i = under - Avx.CompareLessThan(Avx2.GatherVector256(code, under, 4), x).AsInt32();   // +1 where that code is below x
        return NearestOfTwo(code, x, i);
    }

    /// <summary>First index with code[i] ≥ x by a branch-free binary search (eight gathers), then the nearer neighbour.</summary>
    public static Vector256<int> NearestBinarySearch(float* code, Vector256<float> x)
    {
        var i = Vector256<int>.Zero;
        for (int step = 128; step > 0; step >>= 1)
        {
            var c = Avx2.GatherVector256(code, i + Vector256.Create(step - 1), 4);
            i += Avx.CompareLessThan(c, x).AsInt32() & Vector256.Create(step);
        }
        return NearestOfTwo(code, x, i);
    }

    /// <summary>Of code[i−1] and code[i] (clamped to the code), the nearer to x; ties to the lower index.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> NearestOfTwo(float* code, Vector256<float> x, Vector256<int> i)
    {
        var hi = Avx2.Min(i, Vector256.Create(255));
        var lo = Avx2.Max(hi - Vector256<int>.One, Vector256<int>.Zero);
        var dHi = Vector256.Abs(Avx2.GatherVector256(code, hi, 4) - x);
        var dLo = Vector256.Abs(x - Avx2.GatherVector256(code, lo, 4));
        return Avx.BlendVariable(lo.AsSingle(), hi.AsSingle(), Avx.CompareLessThan(dHi, dLo)).AsInt32();
    }
}
