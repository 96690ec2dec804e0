using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.Unets;

/// <summary>diffusers <c>DownBlock2D</c>: resnets, then an optional stride-2 Downsample2D; every output is a skip tensor.</summary>
public sealed class DownBlock2D : UNetDownBlock
{
    readonly ModuleList<ResnetBlock2D> resnets = new();
    readonly ModuleList<Downsample2D>? downsamplers;
    readonly GradientCheckpointing checkpointing;

    public DownBlock2D(int inChannels, int outChannels, int tembChannels, int numLayers, double resnetEps, string actFn,
        int resnetGroups, bool addDownsample, int downsamplePadding, double dropout, GradientCheckpointing checkpointing)
        : base(nameof(DownBlock2D))
    {
        this.checkpointing = checkpointing;
        for (int i = 0; i < numLayers; i++)
            resnets.Add(new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, tembChannels, resnetGroups, resnetEps, dropout, actFn, checkpointing: checkpointing));
        if (addDownsample) downsamplers = new ModuleList<Downsample2D>(new Downsample2D(outChannels, outChannels, downsamplePadding));
        RegisterComponents();
    }

    public override (Tensor Hidden, Tensor[] ResSamples) Forward(Tensor hiddenStates, Tensor temb, Tensor? encoderHiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        var outputs = new List<Tensor>();
        var x = hiddenStates;
        foreach (var resnet in resnets)
        {
            var r = resnet;
            x = checkpointing.Run(a => new[] { r.forward(a[0], a[1]) }, x, temb);
            outputs.Add(x);
        }
        if (downsamplers is not null) { x = downsamplers[0].forward(x); outputs.Add(x); }
        scope.MoveToOuter(outputs);
        return (x, outputs.ToArray());
    }
}
