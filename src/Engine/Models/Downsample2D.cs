using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// diffusers <c>Downsample2D</c> with use_conv: a stride-2 3×3 conv (key <c>conv</c>). With padding 0 (the VAE
/// encoder) the input is first padded asymmetrically by one pixel right and bottom, as diffusers does.
/// </summary>
public sealed class Downsample2D : nn.Module<Tensor, Tensor>
{
    readonly Conv2d conv;
    readonly int padding;

    public Downsample2D(int channels, int outChannels, int padding = 1) : base(nameof(Downsample2D))
    {
        this.padding = padding;
        conv = Layers.Conv2d(channels, outChannels, 3, 2, padding);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = torch.NewDisposeScope();
        var x = padding == 0 ? nn.functional.pad(input, new long[] { 0, 1, 0, 1 }, PaddingModes.Constant, 0.0) : input;
        return MixedPrecision.Forward(conv, x).MoveToOuterDisposeScope();
    }
}
