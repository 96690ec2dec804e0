using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>The bucket-table nearest-code lookup of the 8-bit AdamW kernel gives exactly the binary search's indices.</summary>
public unsafe class NearestCodeTableTests
{
    /// <summary>Facts that only run where the AVX2 kernel does (every x64 CI machine); elsewhere they are reported as skipped.</summary>
    public sealed class Avx2FactAttribute : FactAttribute
    {
        public Avx2FactAttribute() { if (!Avx2.IsSupported) Skip = "no AVX2: the 8-bit kernel takes its scalar path"; }
    }

    public sealed class Avx2TheoryAttribute : TheoryAttribute
    {
        public Avx2TheoryAttribute() { if (!Avx2.IsSupported) Skip = "no AVX2: the 8-bit kernel takes its scalar path"; }
    }

    /// <summary>Values where a lookup can go wrong: each code and its float neighbours, midpoints between codes and theirs,
    /// every bucket edge and its neighbours, zeros, denormals, ±1, ±2, infinities, NaN, and random values.</summary>
    static List<float> Probes(float[] code)
    {
        var xs = new List<float> { 0f, -0f, float.Epsilon, -float.Epsilon, 1f, -1f, 2f, -2f, 1.9999999f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, 1e-38f, -1e-38f };
        void Around(float x) { xs.Add(x); xs.Add(MathF.BitIncrement(x)); xs.Add(MathF.BitDecrement(x)); }
        foreach (var c in code) Around(c);
        for (int i = 1; i < code.Length; i++) Around((code[i - 1] + code[i]) / 2);
        for (int e = 127 - NearestCodeTable.LowExponents - 1; e <= 127; e++)
            for (int m = 0; m < 1 << NearestCodeTable.MantissaBits; m++)
            {
                float edge = BitConverter.Int32BitsToSingle((e << 23) | (m << (23 - NearestCodeTable.MantissaBits)));
                Around(edge); Around(-edge);
            }
        var random = new Random(11);
        for (int i = 0; i < 200_000; i++)
        {
            xs.Add((float)(random.NextDouble() * 2 - 1));
            xs.Add((float)((random.Next(2) * 2 - 1) * Math.Pow(10, -12 + 12.3 * random.NextDouble())));
        }
        return xs;
    }

    [Avx2Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TableLookupEqualsBinarySearch(bool signed)
    {
        var code = BlockwiseQuantization.DynamicMapShared(signed);
        var table = NearestCodeTable.For(code);
        var xs = Probes(code);
        while (xs.Count % 8 != 0) xs.Add(0.5f);
        int mismatches = 0;
        fixed (float* c = code)
        fixed (float* x = xs.ToArray())
            for (int i = 0; i < xs.Count; i += 8)
            {
                var v = Avx.LoadVector256(x + i);
                var fast = table.Nearest8(c, v);
                var reference = NearestCodeTable.NearestBinarySearch(c, v);
                if (!fast.Equals(reference)) mismatches++;
            }
        Assert.Equal(0, mismatches);
    }

    [Avx2Fact]
    public void TableLookupMatchesEachLaneAlone()
    {
        // Lanes are independent: a vector mixing in-range values with one NaN (binary-search fallback) or with
        // different buckets gives each lane the index it gets alone.
        var code = BlockwiseQuantization.DynamicMapShared(true);
        var table = NearestCodeTable.For(code);
        var lanes = new[] { 0.3f, -0.7f, 1e-5f, float.NaN, -1e-9f, 0.999f, -0f, 0.0625f };
        fixed (float* c = code)
        {
            var together = table.Nearest8(c, Vector256.Create(lanes));
            for (int i = 0; i < 8; i++)
                Assert.Equal(NearestCodeTable.NearestBinarySearch(c, Vector256.Create(lanes[i])).GetElement(0), together.GetElement(i));
        }
    }
}
