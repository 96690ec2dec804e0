namespace DreamBooth.Engine.Training;

/// <summary>
/// The trainer's data-side random numbers (epoch order, crops, flips): xoshiro256** with an explicit state that a
/// checkpoint stores, so a resumed run draws exactly what the uninterrupted run would have.
/// </summary>
public sealed class TrainingRandom
{
    ulong _s0, _s1, _s2, _s3;

    public TrainingRandom(ulong[] state)
    {
        if (state is not { Length: 4 } || state.All(x => x == 0)) throw new ArgumentException("A TrainingRandom state is four 64-bit words, not all zero.");
        (_s0, _s1, _s2, _s3) = (state[0], state[1], state[2], state[3]);
    }

    /// <summary>The state for a seed (SplitMix64 expansion, as xoshiro's authors recommend).</summary>
    public static ulong[] SeedState(long seed)
    {
        ulong x = unchecked((ulong)seed);
        var s = new ulong[4];
        for (int i = 0; i < 4; i++)
        {
            ulong z = unchecked(x += 0x9E3779B97F4A7C15UL);
            z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
            z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
            s[i] = z ^ (z >> 31);
        }
        return s;
    }

    public ulong[] State => new[] { _s0, _s1, _s2, _s3 };

    public ulong NextUInt64()
    {
        ulong result = unchecked(RotateLeft(_s1 * 5, 7) * 9);
        ulong t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3;
        _s2 ^= t; _s3 = RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform integer in [0, maxExclusive), without modulo bias.</summary>
    public int NextInt(int maxExclusive)
    {
        if (maxExclusive <= 0) throw new ArgumentOutOfRangeException(nameof(maxExclusive));
        ulong bound = (ulong)maxExclusive, limit = ulong.MaxValue - ulong.MaxValue % bound;
        ulong r;
        do r = NextUInt64(); while (r >= limit);
        return (int)(r % bound);
    }

    /// <summary>Uniform double in [0, 1).</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>A random permutation of 0..n-1 (Fisher–Yates).</summary>
    public int[] Permutation(int n)
    {
        var p = Enumerable.Range(0, n).ToArray();
        for (int i = n - 1; i > 0; i--) { int j = NextInt(i + 1); (p[i], p[j]) = (p[j], p[i]); }
        return p;
    }

    static ulong RotateLeft(ulong x, int k) => (x << k) | (x >> (64 - k));
}
