using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// diffusers <c>Attention</c> with <c>AttnProcessor2_0</c> (models/attention_processor.py): multi-head (cross-)attention
/// through scaled_dot_product_attention. The VAE mid block uses the optional group_norm, residual connection and
/// rescale_output_factor, and 4-D (B,C,H,W) input that is attended over H·W positions.
/// </summary>
public sealed class Attention : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly GroupNorm? group_norm;
    readonly Linear to_q;
    readonly Linear to_k;
    readonly Linear to_v;
    readonly ModuleList<nn.Module<Tensor, Tensor>> to_out;
    readonly bool residualConnection;
    readonly double rescaleOutputFactor;
    readonly bool upcastAttention;

    public int Heads { get; }
    public int DimHead { get; }

    /// <param name="crossAttentionDim">width of the encoder states; null = self-attention (query_dim).</param>
    /// <param name="upcastAttention">compute q·k and softmax in float32 when the model runs in half precision.</param>
    public Attention(int queryDim, int? crossAttentionDim = null, int heads = 8, int dimHead = 64, double dropout = 0.0,
        bool bias = false, bool outBias = true, bool upcastAttention = false, int? normNumGroups = null, double eps = 1e-5,
        bool residualConnection = false, double rescaleOutputFactor = 1.0)
        : base(nameof(Attention))
    {
        Heads = heads; DimHead = dimHead;
        this.residualConnection = residualConnection;
        this.rescaleOutputFactor = rescaleOutputFactor;
        this.upcastAttention = upcastAttention;
        int inner = heads * dimHead;
        int kvDim = crossAttentionDim ?? queryDim;
        if (normNumGroups is int g) group_norm = Layers.GroupNorm(g, queryDim, eps);
        to_q = Layers.Linear(queryDim, inner, hasBias: bias);
        to_k = Layers.Linear(kvDim, inner, hasBias: bias);
        to_v = Layers.Linear(kvDim, inner, hasBias: bias);
        to_out = new ModuleList<nn.Module<Tensor, Tensor>>(Layers.Linear(inner, queryDim, hasBias: outBias), nn.Dropout(dropout));
        RegisterComponents();
    }

    public override Tensor forward(Tensor hiddenStates, Tensor? encoderHiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        var residual = hiddenStates;
        var x = hiddenStates;
        long b = x.shape[0], c = 0, h = 0, w = 0;
        bool spatial = x.dim() == 4;
        if (spatial)
        {
            c = x.shape[1]; h = x.shape[2]; w = x.shape[3];
            x = x.view(b, c, h * w).transpose(1, 2);
        }
        if (group_norm is not null) x = group_norm.forward(x.transpose(1, 2)).transpose(1, 2);

        var context = encoderHiddenStates ?? x;
        var q = SplitHeads(MixedPrecision.Forward(to_q, x), b);
        var k = SplitHeads(MixedPrecision.Forward(to_k, context), b);
        var v = SplitHeads(MixedPrecision.Forward(to_v, context), b);

        var attn = MixedPrecision.ScaledDotProductAttention(q, k, v, upcast: upcastAttention);

        var output = attn.transpose(1, 2).reshape(b, -1, Heads * DimHead);
        output = to_out[1].forward(MixedPrecision.Forward(to_out[0], output));
        if (spatial) output = output.transpose(-1, -2).reshape(b, c, h, w);
        if (residualConnection) output = output + residual;
        if (rescaleOutputFactor != 1.0) output = output / rescaleOutputFactor;
        return output.MoveToOuterDisposeScope();
    }

    Tensor SplitHeads(Tensor t, long batch) => t.view(batch, -1, Heads, DimHead).transpose(1, 2);
}
