using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.Autoencoders;

/// <summary>diffusers <c>UpDecoderBlock2D</c>: resnets without time embedding or skips, then an optional Upsample2D.</summary>
public sealed class UpDecoderBlock2D : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<ResnetBlock2D> resnets = new();
    readonly ModuleList<Upsample2D>? upsamplers;

    public UpDecoderBlock2D(int inChannels, int outChannels, int numLayers, double resnetEps, string actFn, int resnetGroups,
        bool addUpsample, double dropout = 0.0)
        : base(nameof(UpDecoderBlock2D))
    {
        for (int i = 0; i < numLayers; i++)
            resnets.Add(new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, null, resnetGroups, resnetEps, dropout, actFn));
        if (addUpsample) upsamplers = new ModuleList<Upsample2D>(new Upsample2D(outChannels, outChannels));
        RegisterComponents();
    }

    public override Tensor forward(Tensor hiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        var x = hiddenStates;
        foreach (var r in resnets) x = r.forward(x, null);
        if (upsamplers is not null) x = upsamplers[0].forward(x);
        return x.MoveToOuterDisposeScope();
    }
}
