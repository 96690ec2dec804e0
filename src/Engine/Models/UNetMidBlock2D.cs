using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// diffusers <c>UNetMidBlock2D</c> as the VAE uses it: resnet, then (Attention, resnet) per layer. The attention has a
/// group_norm, a residual connection and heads = channels / attention_head_dim (one head of width C in SD's VAE).
/// </summary>
public sealed class UNetMidBlock2D : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly ModuleList<Attention>? attentions;
    readonly ModuleList<ResnetBlock2D> resnets = new();

    public UNetMidBlock2D(int inChannels, int? tembChannels, double resnetEps = 1e-6, string actFn = "swish", int? resnetGroups = 32,
        bool addAttention = true, int? attentionHeadDim = null, double outputScaleFactor = 1.0, double dropout = 0.0, int numLayers = 1)
        : base(nameof(UNetMidBlock2D))
    {
        int groups = resnetGroups ?? Math.Min(inChannels / 4, 32);
        int headDim = attentionHeadDim ?? inChannels;
        resnets.Add(new ResnetBlock2D(inChannels, inChannels, tembChannels, groups, resnetEps, dropout, actFn, outputScaleFactor));
        if (addAttention) attentions = new ModuleList<Attention>();
        for (int i = 0; i < numLayers; i++)
        {
            attentions?.Add(new Attention(inChannels, heads: inChannels / headDim, dimHead: headDim, bias: true,
                normNumGroups: groups, eps: resnetEps, residualConnection: true, rescaleOutputFactor: outputScaleFactor));
            resnets.Add(new ResnetBlock2D(inChannels, inChannels, tembChannels, groups, resnetEps, dropout, actFn, outputScaleFactor));
        }
        RegisterComponents();
    }

    public override Tensor forward(Tensor hiddenStates, Tensor? temb)
    {
        using var scope = torch.NewDisposeScope();
        var x = resnets[0].forward(hiddenStates, temb);
        for (int i = 1; i < resnets.Count; i++)
        {
            if (attentions is not null) x = attentions[i - 1].forward(x, null);
            x = resnets[i].forward(x, temb);
        }
        return x.MoveToOuterDisposeScope();
    }
}
