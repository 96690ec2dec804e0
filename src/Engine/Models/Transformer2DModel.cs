using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// diffusers <c>Transformer2DModel</c> for continuous input (models/transformers/transformer_2d.py): GroupNorm (eps 1e-6),
/// proj_in (1×1 conv, or Linear with use_linear_projection), BasicTransformerBlocks over the H·W tokens, proj_out, + residual.
/// </summary>
public sealed class Transformer2DModel : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly GroupNorm norm;
    readonly nn.Module<Tensor, Tensor> proj_in;
    readonly ModuleList<BasicTransformerBlock> transformer_blocks;
    readonly nn.Module<Tensor, Tensor> proj_out;
    readonly bool useLinearProjection;
    readonly GradientCheckpointing checkpointing;

    public Transformer2DModel(int numAttentionHeads, int attentionHeadDim, int inChannels, int numLayers = 1,
        double dropout = 0.0, int normNumGroups = 32, int? crossAttentionDim = null, bool useLinearProjection = false,
        bool onlyCrossAttention = false, bool upcastAttention = false, GradientCheckpointing? checkpointing = null)
        : base(nameof(Transformer2DModel))
    {
        this.useLinearProjection = useLinearProjection;
        this.checkpointing = checkpointing ?? new GradientCheckpointing();
        int inner = numAttentionHeads * attentionHeadDim;
        norm = Layers.GroupNorm(normNumGroups, inChannels, 1e-6);
        proj_in = useLinearProjection ? Layers.Linear(inChannels, inner) : Layers.Conv2d(inChannels, inner, 1, 1, 0);
        transformer_blocks = new ModuleList<BasicTransformerBlock>();
        for (int i = 0; i < numLayers; i++)
            transformer_blocks.Add(new BasicTransformerBlock(inner, numAttentionHeads, attentionHeadDim, dropout,
                crossAttentionDim, onlyCrossAttention: onlyCrossAttention, upcastAttention: upcastAttention, checkpointing: this.checkpointing));
        proj_out = useLinearProjection ? Layers.Linear(inner, inChannels) : Layers.Conv2d(inner, inChannels, 1, 1, 0);
        RegisterComponents();
    }

    public override Tensor forward(Tensor hiddenStates, Tensor? encoderHiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        long b = hiddenStates.shape[0], h = hiddenStates.shape[2], w = hiddenStates.shape[3];
        var residual = hiddenStates;
        var x = MixedPrecision.Forward(norm, hiddenStates);
        if (!useLinearProjection) x = MixedPrecision.Forward(proj_in, x);
        long inner = x.shape[1];
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, inner);
        if (useLinearProjection) x = MixedPrecision.Forward(proj_in, x);

        foreach (var block in transformer_blocks)
        {
            var blk = block;
            x = encoderHiddenStates is null
                ? checkpointing.Run(a => new[] { blk.forward(a[0], null) }, x)
                : checkpointing.Run(a => new[] { blk.forward(a[0], a[1]) }, x, encoderHiddenStates);
        }

        if (useLinearProjection) x = MixedPrecision.Forward(proj_out, x);
        x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous();
        if (!useLinearProjection) x = MixedPrecision.Forward(proj_out, x);
        return (x + residual).MoveToOuterDisposeScope();
    }
}
