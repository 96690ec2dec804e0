using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.Unets;

/// <summary>
/// diffusers <c>CrossAttnDownBlock2D</c>: (resnet, Transformer2DModel) pairs, then an optional Downsample2D.
/// Heads: numAttentionHeads of dim outChannels / numAttentionHeads.
/// </summary>
public sealed class CrossAttnDownBlock2D : UNetDownBlock
{
    readonly ModuleList<Transformer2DModel> attentions = new();
    readonly ModuleList<ResnetBlock2D> resnets = new();
    readonly ModuleList<Downsample2D>? downsamplers;
    readonly GradientCheckpointing checkpointing;

    public CrossAttnDownBlock2D(int inChannels, int outChannels, int tembChannels, int numLayers, int transformerLayersPerBlock,
        double resnetEps, string actFn, int resnetGroups, int crossAttentionDim, int numAttentionHeads, bool addDownsample,
        int downsamplePadding, bool useLinearProjection, bool onlyCrossAttention, bool upcastAttention, double dropout,
        GradientCheckpointing checkpointing)
        : base(nameof(CrossAttnDownBlock2D))
    {
        this.checkpointing = checkpointing;
        for (int i = 0; i < numLayers; i++)
        {
            resnets.Add(new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, tembChannels, resnetGroups, resnetEps, dropout, actFn, checkpointing: checkpointing));
            attentions.Add(new Transformer2DModel(numAttentionHeads, outChannels / numAttentionHeads, outChannels, transformerLayersPerBlock,
                normNumGroups: resnetGroups, crossAttentionDim: crossAttentionDim, useLinearProjection: useLinearProjection,
                onlyCrossAttention: onlyCrossAttention, upcastAttention: upcastAttention, checkpointing: checkpointing));
        }
        if (addDownsample) downsamplers = new ModuleList<Downsample2D>(new Downsample2D(outChannels, outChannels, downsamplePadding));
        RegisterComponents();
    }

    public override (Tensor Hidden, Tensor[] ResSamples) Forward(Tensor hiddenStates, Tensor temb, Tensor? encoderHiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        var outputs = new List<Tensor>();
        var x = hiddenStates;
        for (int i = 0; i < resnets.Count; i++)
        {
            var r = resnets[i];
            x = checkpointing.Run(a => new[] { r.forward(a[0], a[1]) }, x, temb);
            x = attentions[i].forward(x, encoderHiddenStates);
            outputs.Add(x);
        }
        if (downsamplers is not null) { x = downsamplers[0].forward(x); outputs.Add(x); }
        scope.MoveToOuter(outputs);
        return (x, outputs.ToArray());
    }
}
