using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.Autoencoders;

/// <summary>diffusers <c>DownEncoderBlock2D</c>: resnets without time embedding, then an optional Downsample2D (padding 0 in the VAE).</summary>
public sealed class DownEncoderBlock2D : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<ResnetBlock2D> resnets = new();
    readonly ModuleList<Downsample2D>? downsamplers;

    public DownEncoderBlock2D(int inChannels, int outChannels, int numLayers, double resnetEps, string actFn, int resnetGroups,
        bool addDownsample, int downsamplePadding, double dropout = 0.0)
        : base(nameof(DownEncoderBlock2D))
    {
        for (int i = 0; i < numLayers; i++)
            resnets.Add(new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, null, resnetGroups, resnetEps, dropout, actFn));
        if (addDownsample) downsamplers = new ModuleList<Downsample2D>(new Downsample2D(outChannels, outChannels, downsamplePadding));
        RegisterComponents();
    }

    public override Tensor forward(Tensor hiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        var x = hiddenStates;
        foreach (var r in resnets) x = r.forward(x, null);
        if (downsamplers is not null) x = downsamplers[0].forward(x);
        return x.MoveToOuterDisposeScope();
    }
}
