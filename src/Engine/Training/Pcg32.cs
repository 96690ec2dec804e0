using System.Globalization;

namespace DreamBooth.Engine.Training;

/// <summary>
/// A small PRNG with an explicit, serialisable state (O'Neill's PCG32, XSH-RR output, 64-bit LCG), used instead of
/// <see cref="System.Random"/> for data order, crops and flips so a resumed run draws exactly what the
/// uninterrupted run would have drawn.
/// </summary>
public sealed class Pcg32
{
    const ulong Multiplier = 6364136223846793005UL;

    ulong _state;
    readonly ulong _increment;   // odd; selects the stream

    /// <summary>Seeds like the PCG reference <c>pcg32_srandom(seed, stream)</c>.</summary>
    public Pcg32(ulong seed, ulong stream = 0xda3e39cb94b95bdbUL)
    {
        _increment = (stream << 1) | 1UL;
        _state = 0;
        NextUInt32();
        _state += seed;
        NextUInt32();
    }

    Pcg32(ulong state, ulong increment, bool _) { _state = state; _increment = increment; }

    /// <summary>The full state; <see cref="FromState"/> rebuilds an identical generator.</summary>
    public (ulong State, ulong Increment) State => (_state, _increment);

    public static Pcg32 FromState(ulong state, ulong increment)
    {
        if ((increment & 1UL) == 0) throw new ArgumentException("A PCG32 increment must be odd.", nameof(increment));
        return new Pcg32(state, increment, true);
    }

    /// <summary>State as "state:increment" in hex, for checkpoint metadata.</summary>
    public string Serialize() => _state.ToString("x16", CultureInfo.InvariantCulture) + ":" + _increment.ToString("x16", CultureInfo.InvariantCulture);

    public static Pcg32 Deserialize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split(':');
        if (parts.Length != 2
            || !ulong.TryParse(parts[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var s)
            || !ulong.TryParse(parts[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var inc))
            throw new FormatException($"'{text}' is not a PCG32 state (expected two 16-digit hex numbers joined by ':').");
        return FromState(s, inc);
    }

    public uint NextUInt32()
    {
        ulong old = _state;
        _state = unchecked(old * Multiplier + _increment);
        uint xorShifted = (uint)(((old >> 18) ^ old) >> 27);
        int rot = (int)(old >> 59);
        return (xorShifted >> rot) | (xorShifted << ((-rot) & 31));
    }

    /// <summary>Uniform integer in [0, <paramref name="maxExclusive"/>), unbiased (rejection sampling).</summary>
    public int NextInt(int maxExclusive)
    {
        if (maxExclusive <= 0) throw new ArgumentOutOfRangeException(nameof(maxExclusive), maxExclusive, "must be > 0");
        uint bound = (uint)maxExclusive;
        uint threshold = (uint)(-(int)bound) % bound;   // 2^32 mod bound
        while (true)
        {
            uint r = NextUInt32();
            if (r >= threshold) return (int)(r % bound);
        }
    }

    /// <summary>Uniform integer in [<paramref name="minInclusive"/>, <paramref name="maxExclusive"/>).</summary>
    public int NextInt(int minInclusive, int maxExclusive)
    {
        if (maxExclusive <= minInclusive) throw new ArgumentOutOfRangeException(nameof(maxExclusive), maxExclusive, $"must be > {minInclusive}");
        return minInclusive + NextInt(maxExclusive - minInclusive);
    }

    /// <summary>Uniform double in [0, 1) with 53 random bits.</summary>
    public double NextDouble()
    {
        ulong hi = NextUInt32(), lo = NextUInt32();
        return (((hi << 32) | lo) >> 11) * (1.0 / (1UL << 53));
    }

    /// <summary>Fisher–Yates shuffle in place.</summary>
    public void Shuffle<T>(IList<T> items)
    {
        ArgumentNullException.ThrowIfNull(items);
        for (int i = items.Count - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }
}
