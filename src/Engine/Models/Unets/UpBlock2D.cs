using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.Unets;

/// <summary>
/// diffusers <c>UpBlock2D</c>: each resnet takes the running tensor concatenated with one skip tensor (popped from the
/// end); resnet i's input is prevOutputChannels (i = 0) or outChannels, its skip is inChannels for the last resnet,
/// else outChannels. Optional Upsample2D.
/// </summary>
public sealed class UpBlock2D : UNetUpBlock
{
    readonly ModuleList<ResnetBlock2D> resnets = new();
    readonly ModuleList<Upsample2D>? upsamplers;
    readonly GradientCheckpointing checkpointing;

    public UpBlock2D(int inChannels, int prevOutputChannels, int outChannels, int tembChannels, int numLayers, double resnetEps,
        string actFn, int resnetGroups, bool addUpsample, double dropout, GradientCheckpointing checkpointing)
        : base(nameof(UpBlock2D))
    {
        this.checkpointing = checkpointing;
        for (int i = 0; i < numLayers; i++)
        {
            int skip = i == numLayers - 1 ? inChannels : outChannels;
            int resIn = i == 0 ? prevOutputChannels : outChannels;
            resnets.Add(new ResnetBlock2D(resIn + skip, outChannels, tembChannels, resnetGroups, resnetEps, dropout, actFn, checkpointing: checkpointing));
        }
        if (addUpsample) upsamplers = new ModuleList<Upsample2D>(new Upsample2D(outChannels, outChannels));
        RegisterComponents();
    }

    public override int ResnetCount => resnets.Count;

    public override Tensor Forward(Tensor hiddenStates, IReadOnlyList<Tensor> resSamples, Tensor temb, Tensor? encoderHiddenStates, long[]? upsampleSize)
    {
        using var scope = torch.NewDisposeScope();
        var x = hiddenStates;
        for (int i = 0; i < resnets.Count; i++)
        {
            x = torch.cat(new[] { x, resSamples[resSamples.Count - 1 - i] }, 1);
            var r = resnets[i];
            x = checkpointing.Run(a => new[] { r.forward(a[0], a[1]) }, x, temb);
        }
        if (upsamplers is not null) x = upsamplers[0].forward(x, upsampleSize);
        return x.MoveToOuterDisposeScope();
    }
}
