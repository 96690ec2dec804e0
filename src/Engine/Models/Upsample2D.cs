using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// diffusers <c>Upsample2D</c> with use_conv: nearest-neighbour ×2 (or to an explicit size when the UNet input is not
/// a multiple of the overall factor), then a 3×3 conv (key <c>conv</c>).
/// </summary>
public sealed class Upsample2D : nn.Module<Tensor, long[]?, Tensor>
{
    readonly Conv2d conv;

    public Upsample2D(int channels, int outChannels) : base(nameof(Upsample2D))
    {
        conv = Layers.Conv2d(channels, outChannels, 3, 1, 1);
        RegisterComponents();
    }

    public Tensor forward(Tensor input) => forward(input, null);

    public override Tensor forward(Tensor input, long[]? outputSize)
    {
        using var scope = torch.NewDisposeScope();
        // nearest upsampling in bfloat16 is not implemented everywhere; diffusers upcasts too
        var x = input.dtype == ScalarType.BFloat16 ? input.to(ScalarType.Float32) : input;
        x = outputSize is null
            ? nn.functional.interpolate(x, scale_factor: new[] { 2.0, 2.0 }, mode: InterpolationMode.Nearest)
            : nn.functional.interpolate(x, size: outputSize, mode: InterpolationMode.Nearest);
        if (input.dtype == ScalarType.BFloat16) x = x.to(ScalarType.BFloat16);
        return MixedPrecision.Forward(conv, x).MoveToOuterDisposeScope();
    }
}
