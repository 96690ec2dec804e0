using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.Unets;

/// <summary>diffusers <c>CrossAttnUpBlock2D</c>: like UpBlock2D with a Transformer2DModel after each resnet.</summary>
public sealed class CrossAttnUpBlock2D : UNetUpBlock
{
    readonly ModuleList<Transformer2DModel> attentions = new();
    readonly ModuleList<ResnetBlock2D> resnets = new();
    readonly ModuleList<Upsample2D>? upsamplers;
    readonly GradientCheckpointing checkpointing;

    public CrossAttnUpBlock2D(int inChannels, int prevOutputChannels, int outChannels, int tembChannels, int numLayers,
        int transformerLayersPerBlock, double resnetEps, string actFn, int resnetGroups, int crossAttentionDim,
        int numAttentionHeads, bool addUpsample, bool useLinearProjection, bool onlyCrossAttention, bool upcastAttention,
        double dropout, GradientCheckpointing checkpointing)
        : base(nameof(CrossAttnUpBlock2D))
    {
        this.checkpointing = checkpointing;
        for (int i = 0; i < numLayers; i++)
        {
            int skip = i == numLayers - 1 ? inChannels : outChannels;
            int resIn = i == 0 ? prevOutputChannels : outChannels;
            resnets.Add(new ResnetBlock2D(resIn + skip, outChannels, tembChannels, resnetGroups, resnetEps, dropout, actFn, checkpointing: checkpointing));
            attentions.Add(new Transformer2DModel(numAttentionHeads, outChannels / numAttentionHeads, outChannels, transformerLayersPerBlock,
                normNumGroups: resnetGroups, crossAttentionDim: crossAttentionDim, useLinearProjection: useLinearProjection,
                onlyCrossAttention: onlyCrossAttention, upcastAttention: upcastAttention, checkpointing: checkpointing));
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
            x = attentions[i].forward(x, encoderHiddenStates);
        }
        if (upsamplers is not null) x = upsamplers[0].forward(x, upsampleSize);
        return x.MoveToOuterDisposeScope();
    }
}
