using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.TextEncoders;

/// <summary>transformers' <c>CLIPEncoderLayer</c>: pre-LN residual blocks, attention then MLP.</summary>
public sealed class ClipEncoderLayer : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly ClipAttention self_attn;
    readonly LayerNorm layer_norm1;
    readonly ClipMlp mlp;
    readonly LayerNorm layer_norm2;

    public ClipAttention SelfAttn => self_attn;
    public ClipMlp Mlp => mlp;
    public LayerNorm LayerNorm1 => layer_norm1;
    public LayerNorm LayerNorm2 => layer_norm2;

    public ClipEncoderLayer(ClipTextConfig config) : base(nameof(ClipEncoderLayer))
    {
        self_attn = new ClipAttention(config);
        layer_norm1 = Layers.LayerNorm(config.HiddenSize, config.LayerNormEps);
        mlp = new ClipMlp(config);
        layer_norm2 = Layers.LayerNorm(config.HiddenSize, config.LayerNormEps);
        RegisterComponents();
    }

    public override Tensor forward(Tensor hiddenStates, Tensor? attentionMask)
    {
        using var scope = NewDisposeScope();
        // Under autocast (a trained text encoder with -MixedPrecision) the norms run in fp32 and the projections in the
        // low dtype; the fp32 residual stream stays fp32 (fp32 + low-precision promotes to fp32), as in PyTorch.
        var h = hiddenStates + self_attn.forward(MixedPrecision.Forward(layer_norm1, hiddenStates), attentionMask);
        h = h + mlp.forward(MixedPrecision.Forward(layer_norm2, h));
        return h.MoveToOuterDisposeScope();
    }
}
