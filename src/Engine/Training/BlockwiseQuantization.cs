using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Training;

/// <summary>
/// bitsandbytes' block-wise 8-bit quantization of optimizer state (<c>functional.create_dynamic_map</c>,
/// <c>quantize_blockwise</c>, <c>dequantize_blockwise</c>): each block of <see cref="BlockSize"/> values is scaled by
/// its absolute maximum into [-1, 1] and every value is stored as the index of the nearest entry of a 256-entry code.
/// </summary>
public static class BlockwiseQuantization
{
    /// <summary>Block size of bitsandbytes' blockwise 8-bit optimizers (<c>optimizer_update_8bit_blockwise</c>).</summary>
    public const int BlockSize = 256;

    static readonly Lazy<float[]> s_signed = new(() => BuildDynamicMap(signed: true));
    static readonly Lazy<float[]> s_unsigned = new(() => BuildDynamicMap(signed: false));

    /// <summary>
    /// <c>create_dynamic_map(signed)</c> (max_exponent_bits 7, total_bits 8): the "dynamic tree" code, sorted,
    /// float32. The signed map is bitsandbytes' "dynamic" (exp_avg), the unsigned one its "udynamic" (exp_avg_sq).
    /// </summary>
    public static float[] DynamicMap(bool signed) => (float[])(signed ? s_signed : s_unsigned).Value.Clone();

    internal static float[] DynamicMapShared(bool signed) => (signed ? s_signed : s_unsigned).Value;

    static float[] BuildDynamicMap(bool signed, int maxExponentBits = 7, int totalBits = 8)
    {
        using var scope = torch.NewDisposeScope();
        var data = new List<double>();
        int nonSignBits = totalBits - 1;   // bitsandbytes uses 7 for both the signed and unsigned map
        int additionalItems = (1 << (nonSignBits - maxExponentBits)) - 1;
        for (int i = 0; i < maxExponentBits; i++)
        {
            int fractionItems = signed
                ? (1 << (i + nonSignBits - maxExponentBits)) + 1
                : (1 << (i + nonSignBits - maxExponentBits + 1)) + 1;
            // Means of float32 linspace boundaries, computed by libtorch exactly as torch does; scaled in double.
            double scale = Math.Pow(10, -(maxExponentBits - 1) + i);
            foreach (var m in Means(fractionItems))
            {
                data.Add(scale * m);
                if (signed) data.Add(-scale * m);
            }
        }
        if (additionalItems > 0)
        {
            double scale = Math.Pow(10, -(maxExponentBits - 1) + maxExponentBits - 1);
            foreach (var m in Means(additionalItems + 1))
            {
                data.Add(scale * m);
                if (signed) data.Add(-scale * m);
            }
        }
        data.Add(0);
        data.Add(1.0);
        if (data.Count != 1 << totalBits) throw new InvalidOperationException($"dynamic map has {data.Count} entries");
        return data.Select(d => (float)d).OrderBy(f => f).ToArray();
    }

    static double[] Means(int boundaries)
    {
        using var scope = torch.NewDisposeScope();
        var b = torch.linspace(0.1, 1, boundaries, ScalarType.Float32);
        var means = (b[..^1] + b[1..]) / 2.0f;
        return means.to(ScalarType.Float64).data<double>().ToArray();
    }

    /// <summary>Number of absmax blocks for <paramref name="numel"/> values.</summary>
    public static long BlockCount(long numel) => (numel + BlockSize - 1) / BlockSize;

    /// <summary>
    /// Quantizes <paramref name="values"/> (float32, any shape) to nearest-code indices (uint8, same shape) and
    /// per-block absmax (float32 [blocks]). An all-zero block gets absmax 1, as bitsandbytes' reference does.
    /// </summary>
    public static (Tensor Codes, Tensor Absmax) Quantize(Tensor values, Tensor code)
    {
        using var scope = torch.NewDisposeScope();
        var (codes, absmax) = QuantizeCore(values, code);
        return (codes.MoveToOuterDisposeScope(), absmax.MoveToOuterDisposeScope());
    }

    /// <summary>Quantizes into existing <paramref name="codes"/>/<paramref name="absmax"/> tensors (in place).</summary>
    public static void QuantizeInto(Tensor values, Tensor code, Tensor codes, Tensor absmax)
    {
        using var scope = torch.NewDisposeScope();
        var (c, a) = QuantizeCore(values, code);
        codes.copy_(c);
        absmax.copy_(a);
    }

    static (Tensor Codes, Tensor Absmax) QuantizeCore(Tensor values, Tensor code)
    {
        long n = values.numel();
        long blocks = BlockCount(n);
        var flat = values.reshape(-1);
        long pad = blocks * BlockSize - n;
        if (pad > 0) flat = nn.functional.pad(flat, [0, pad]);
        var blocked = flat.view(blocks, BlockSize);
        var absmax = blocked.abs().amax([1], keepdim: true);
        absmax = torch.where(absmax == 0, torch.ones_like(absmax), absmax);
        var scaled = (blocked / absmax).reshape(-1);
        if (pad > 0) scaled = scaled.narrow(0, 0, n);

        // Nearest entry of the sorted code; ties go to the lower index (torch.argmin's first-minimum rule).
        var hi = torch.searchsorted(code, scaled, out_int32: true).clamp(0, code.numel() - 1);   // int32: halves the transient
        var lo = (hi - 1).clamp_min(0);
        var dHi = (code.index_select(0, hi) - scaled).abs();
        var dLo = (scaled - code.index_select(0, lo)).abs();
        var idx = torch.where(dHi < dLo, hi, lo);
        return (idx.to(ScalarType.Byte).reshape(values.shape), absmax.reshape(blocks));
    }

    /// <summary><c>dequantize_blockwise</c>: code[codes] × absmax of the value's block, float32, shape of <paramref name="codes"/>.</summary>
    public static Tensor Dequantize(Tensor codes, Tensor absmax, Tensor code)
    {
        using var scope = torch.NewDisposeScope();
        long n = codes.numel();
        long blocks = absmax.numel();
        var values = code.index_select(0, codes.reshape(-1).to(ScalarType.Int64));
        long pad = blocks * BlockSize - n;
        if (pad > 0) values = nn.functional.pad(values, [0, pad]);
        var result = (values.view(blocks, BlockSize) * absmax.view(blocks, 1)).reshape(-1);
        if (pad > 0) result = result.narrow(0, 0, n);
        return result.reshape(codes.shape).MoveToOuterDisposeScope();
    }
}
