using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// diffusers <c>Timesteps</c> / <c>get_timestep_embedding</c> (models/embeddings.py): sinusoidal embedding of (possibly
/// fractional, never rounded) timesteps: t·exp(−ln(10000)·i/(half − shift)), [sin, cos] or [cos, sin] when flip_sin_to_cos.
/// </summary>
public sealed class Timesteps : nn.Module<Tensor, Tensor>
{
    readonly int numChannels;
    readonly bool flipSinToCos;
    readonly double downscaleFreqShift;
    readonly double scale;
    readonly double maxPeriod;

    public Timesteps(int numChannels, bool flipSinToCos, double downscaleFreqShift, double scale = 1.0, double maxPeriod = 10000)
        : base(nameof(Timesteps))
    {
        this.numChannels = numChannels; this.flipSinToCos = flipSinToCos; this.downscaleFreqShift = downscaleFreqShift;
        this.scale = scale; this.maxPeriod = maxPeriod;
        RegisterComponents();
    }

    /// <param name="timesteps">1-D, one per batch element (int or float). Result is float32 [N, numChannels].</param>
    public override Tensor forward(Tensor timesteps)
    {
        if (timesteps.dim() != 1) throw new ArgumentException("Timesteps should be a 1-D tensor.", nameof(timesteps));
        using var scope = torch.NewDisposeScope();
        int half = numChannels / 2;
        var exponent = torch.arange(0, half, dtype: ScalarType.Float32, device: timesteps.device) * (float)(-Math.Log(maxPeriod));
        exponent = exponent / (float)(half - downscaleFreqShift);
        var freqs = exponent.exp();
        var args = timesteps[.., TensorIndex.None].to(ScalarType.Float32) * freqs[TensorIndex.None, ..];
        if (scale != 1.0) args = args * scale;
        var emb = torch.cat(new[] { args.sin(), args.cos() }, -1);
        if (flipSinToCos) emb = torch.cat(new[] { emb[.., half..], emb[.., ..half] }, -1);
        if (numChannels % 2 == 1) emb = nn.functional.pad(emb, new long[] { 0, 1, 0, 0 });
        return emb.MoveToOuterDisposeScope();
    }
}
