using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// diffusers <c>BasicTransformerBlock</c> (models/attention.py) with norm_type "layer_norm": pre-norm self-attention
/// (or cross-attention when only_cross_attention), pre-norm cross-attention, pre-norm GEGLU feed-forward, each residual.
/// </summary>
public sealed class BasicTransformerBlock : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly LayerNorm norm1;
    readonly Attention attn1;
    readonly LayerNorm? norm2;
    readonly Attention? attn2;
    readonly LayerNorm norm3;
    readonly FeedForward ff;
    readonly bool onlyCrossAttention;
    readonly GradientCheckpointing? checkpointing;

    public BasicTransformerBlock(int dim, int numAttentionHeads, int attentionHeadDim, double dropout = 0.0,
        int? crossAttentionDim = null, bool attentionBias = false, bool onlyCrossAttention = false,
        bool upcastAttention = false, double normEps = 1e-5, GradientCheckpointing? checkpointing = null)
        : base(nameof(BasicTransformerBlock))
    {
        this.checkpointing = checkpointing;
        this.onlyCrossAttention = onlyCrossAttention;
        norm1 = Layers.LayerNorm(dim, normEps);
        attn1 = new Attention(dim, onlyCrossAttention ? crossAttentionDim : null, numAttentionHeads, attentionHeadDim,
            dropout, bias: attentionBias, upcastAttention: upcastAttention);
        if (crossAttentionDim is not null)
        {
            norm2 = Layers.LayerNorm(dim, normEps);
            attn2 = new Attention(dim, crossAttentionDim, numAttentionHeads, attentionHeadDim, dropout,
                bias: attentionBias, upcastAttention: upcastAttention);
        }
        norm3 = Layers.LayerNorm(dim, normEps);
        ff = new FeedForward(dim, dropout: dropout);
        RegisterComponents();
    }

    public override Tensor forward(Tensor hiddenStates, Tensor? encoderHiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        var x = hiddenStates;
        x = attn1.forward(MixedPrecision.Forward(norm1, x), onlyCrossAttention ? encoderHiddenStates : null) + x;
        if (attn2 is not null) x = attn2.forward(MixedPrecision.Forward(norm2!, x), encoderHiddenStates) + x;
        // Selective checkpointing recomputes norm3 and the GEGLU (its 2·4·dim projection output and the gelu) in
        // backward; the output projection keeps its saved input.
        Tensor[] Hidden(Tensor[] a) => [ff.Hidden(MixedPrecision.Forward(norm3, a[0]))];
        var hidden = checkpointing is null ? Hidden([x])[0] : checkpointing.RunSegment(Hidden, x);
        x = ff.Output(hidden) + x;
        return x.MoveToOuterDisposeScope();
    }
}
