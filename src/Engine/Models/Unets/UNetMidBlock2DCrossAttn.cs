using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.Unets;

/// <summary>diffusers <c>UNetMidBlock2DCrossAttn</c>: resnet, then (Transformer2DModel, resnet) per layer; channels unchanged.</summary>
public sealed class UNetMidBlock2DCrossAttn : nn.Module<Tensor, Tensor, Tensor?, Tensor>
{
    readonly ModuleList<Transformer2DModel> attentions = new();
    readonly ModuleList<ResnetBlock2D> resnets = new();
    readonly GradientCheckpointing checkpointing;

    public UNetMidBlock2DCrossAttn(int inChannels, int tembChannels, int transformerLayersPerBlock, double resnetEps, string actFn,
        double outputScaleFactor, int crossAttentionDim, int numAttentionHeads, int resnetGroups, bool useLinearProjection,
        bool upcastAttention, double dropout, GradientCheckpointing checkpointing, int numLayers = 1)
        : base(nameof(UNetMidBlock2DCrossAttn))
    {
        this.checkpointing = checkpointing;
        resnets.Add(new ResnetBlock2D(inChannels, inChannels, tembChannels, resnetGroups, resnetEps, dropout, actFn, outputScaleFactor, checkpointing));
        for (int i = 0; i < numLayers; i++)
        {
            attentions.Add(new Transformer2DModel(numAttentionHeads, inChannels / numAttentionHeads, inChannels, transformerLayersPerBlock,
                normNumGroups: resnetGroups, crossAttentionDim: crossAttentionDim, useLinearProjection: useLinearProjection,
                upcastAttention: upcastAttention, checkpointing: checkpointing));
            resnets.Add(new ResnetBlock2D(inChannels, inChannels, tembChannels, resnetGroups, resnetEps, dropout, actFn, outputScaleFactor, checkpointing));
        }
        RegisterComponents();
    }

    public override Tensor forward(Tensor hiddenStates, Tensor temb, Tensor? encoderHiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        var x = resnets[0].forward(hiddenStates, temb);
        for (int i = 0; i < attentions.Count; i++)
        {
            x = attentions[i].forward(x, encoderHiddenStates);
            var r = resnets[i + 1];
            x = checkpointing.Run(a => new[] { r.forward(a[0], a[1]) }, x, temb);
        }
        return x.MoveToOuterDisposeScope();
    }
}
