using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.Autoencoders;

/// <summary>diffusers <c>Encoder</c> (models/autoencoders/vae.py): conv_in, DownEncoderBlock2Ds, UNetMidBlock2D, norm, act, conv_out to 2·latent (mean, logvar).</summary>
public sealed class Encoder : nn.Module<Tensor, Tensor>
{
    readonly Conv2d conv_in;
    readonly ModuleList<DownEncoderBlock2D> down_blocks = new();
    readonly UNetMidBlock2D mid_block;
    readonly GroupNorm conv_norm_out;
    readonly nn.Module<Tensor, Tensor> conv_act;
    readonly Conv2d conv_out;

    public Encoder(int inChannels, int outChannels, int[] blockOutChannels, int layersPerBlock, int normNumGroups, string actFn,
        bool doubleZ = true, bool midBlockAddAttention = true)
        : base(nameof(Encoder))
    {
        conv_in = Layers.Conv2d(inChannels, blockOutChannels[0], 3, 1, 1);
        int output = blockOutChannels[0];
        for (int i = 0; i < blockOutChannels.Length; i++)
        {
            int input = output;
            output = blockOutChannels[i];
            bool isFinal = i == blockOutChannels.Length - 1;
            down_blocks.Add(new DownEncoderBlock2D(input, output, layersPerBlock, 1e-6, actFn, normNumGroups, !isFinal, downsamplePadding: 0));
        }
        mid_block = new UNetMidBlock2D(blockOutChannels[^1], null, 1e-6, actFn, normNumGroups, midBlockAddAttention, blockOutChannels[^1]);
        conv_norm_out = Layers.GroupNorm(normNumGroups, blockOutChannels[^1], 1e-6);
        conv_act = nn.SiLU();
        conv_out = Layers.Conv2d(blockOutChannels[^1], doubleZ ? 2 * outChannels : outChannels, 3, 1, 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor sample)
    {
        using var scope = torch.NewDisposeScope();
        var x = MixedPrecision.Forward(conv_in, sample);
        foreach (var b in down_blocks) x = b.forward(x);
        x = mid_block.forward(x, null);
        x = MixedPrecision.Forward(conv_out, conv_act.forward(conv_norm_out.forward(x)));
        return x.MoveToOuterDisposeScope();
    }
}
