using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.TextEncoders;

/// <summary>
/// transformers' <c>CLIPAttention</c> (SDPA path of 4.47): multi-head self-attention with biased q/k/v/out
/// projections, scale head_dim^-0.5, and one additive mask (causal + padding, already combined).
/// </summary>
public sealed class ClipAttention : nn.Module<Tensor, Tensor?, Tensor>
{
    // Declaration order follows transformers (k, v, q, out); it only affects state_dict order, not names.
    readonly Linear k_proj;
    readonly Linear v_proj;
    readonly Linear q_proj;
    readonly Linear out_proj;
    readonly int numHeads;
    readonly int headDim;

    public Linear QProj => q_proj;
    public Linear KProj => k_proj;
    public Linear VProj => v_proj;
    public Linear OutProj => out_proj;

    public ClipAttention(ClipTextConfig config) : base(nameof(ClipAttention))
    {
        int d = config.HiddenSize;
        numHeads = config.NumAttentionHeads;
        headDim = config.HeadDim;
        k_proj = Layers.Linear(d, d);
        v_proj = Layers.Linear(d, d);
        q_proj = Layers.Linear(d, d);
        out_proj = Layers.Linear(d, d);
        RegisterComponents();
    }

    /// <param name="hiddenStates">[batch, seq, hidden]</param>
    /// <param name="attentionMask">additive float mask broadcastable to [batch, heads, seq, seq], or null</param>
    public override Tensor forward(Tensor hiddenStates, Tensor? attentionMask)
    {
        using var scope = NewDisposeScope();
        long b = hiddenStates.shape[0], s = hiddenStates.shape[1];
        Tensor Heads(Tensor x) => x.view(b, s, numHeads, headDim).transpose(1, 2);
        // MixedPrecision.Forward applies LoRA adapters (Models.LinearAdapters) and the autocast dtype when active.
        var q = Heads(MixedPrecision.Forward(q_proj, hiddenStates));
        var k = Heads(MixedPrecision.Forward(k_proj, hiddenStates));
        var v = Heads(MixedPrecision.Forward(v_proj, hiddenStates));
        // TorchSharp's SDPA has no scale argument; its default 1/sqrt(head_dim) is CLIP's scale.
        // Autocast casts SDPA's floating inputs, the additive mask included, to the compute dtype (done inside).
        var attn = MixedPrecision.ScaledDotProductAttention(q, k, v, attentionMask);
        attn = attn.transpose(1, 2).reshape(b, s, numHeads * headDim);
        return MixedPrecision.Forward(out_proj, attn).MoveToOuterDisposeScope();
    }
}
