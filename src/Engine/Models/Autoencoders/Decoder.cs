using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.Autoencoders;

/// <summary>diffusers <c>Decoder</c> (models/autoencoders/vae.py): conv_in, UNetMidBlock2D, UpDecoderBlock2Ds (layers_per_block + 1 resnets), norm, act, conv_out.</summary>
public sealed class Decoder : nn.Module<Tensor, Tensor>
{
    readonly Conv2d conv_in;
    readonly UNetMidBlock2D mid_block;
    readonly ModuleList<UpDecoderBlock2D> up_blocks = new();
    readonly GroupNorm conv_norm_out;
    readonly nn.Module<Tensor, Tensor> conv_act;
    readonly Conv2d conv_out;

    public Decoder(int inChannels, int outChannels, int[] blockOutChannels, int layersPerBlock, int normNumGroups, string actFn,
        bool midBlockAddAttention = true)
        : base(nameof(Decoder))
    {
        conv_in = Layers.Conv2d(inChannels, blockOutChannels[^1], 3, 1, 1);
        mid_block = new UNetMidBlock2D(blockOutChannels[^1], null, 1e-6, actFn, normNumGroups, midBlockAddAttention, blockOutChannels[^1]);
        var reversed = Enumerable.Reverse(blockOutChannels).ToArray();
        int output = reversed[0];
        for (int i = 0; i < reversed.Length; i++)
        {
            int prevOutput = output;
            output = reversed[i];
            bool isFinal = i == reversed.Length - 1;
            up_blocks.Add(new UpDecoderBlock2D(prevOutput, output, layersPerBlock + 1, 1e-6, actFn, normNumGroups, !isFinal));
        }
        conv_norm_out = Layers.GroupNorm(normNumGroups, blockOutChannels[0], 1e-6);
        conv_act = nn.SiLU();
        conv_out = Layers.Conv2d(blockOutChannels[0], outChannels, 3, 1, 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor z)
    {
        using var scope = torch.NewDisposeScope();
        var x = MixedPrecision.Forward(conv_in, z);
        x = mid_block.forward(x, null);
        foreach (var b in up_blocks) x = b.forward(x);
        x = MixedPrecision.Forward(conv_out, conv_act.forward(conv_norm_out.forward(x)));
        return x.MoveToOuterDisposeScope();
    }
}
