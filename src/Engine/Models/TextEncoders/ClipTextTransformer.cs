using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.TextEncoders;

/// <summary>
/// transformers' <c>CLIPTextTransformer</c> (<c>CLIPTextModel.text_model</c>): embeddings, causal encoder,
/// final LayerNorm and EOS pooling.
/// </summary>
public sealed class ClipTextTransformer : nn.Module
{
    readonly ClipTextEmbeddings embeddings;
    readonly ClipEncoder encoder;
    readonly LayerNorm final_layer_norm;
    readonly int eosTokenId;

    public ClipTextEmbeddings Embeddings => embeddings;
    public ClipEncoder Encoder => encoder;
    public LayerNorm FinalLayerNorm => final_layer_norm;

    public ClipTextTransformer(ClipTextConfig config) : base(nameof(ClipTextTransformer))
    {
        embeddings = new ClipTextEmbeddings(config);
        encoder = new ClipEncoder(config);
        final_layer_norm = Layers.LayerNorm(config.HiddenSize, config.LayerNormEps);
        eosTokenId = config.EosTokenId;
        RegisterComponents();
    }

    /// <summary>
    /// Embeddings and the first <paramref name="layerCount"/> encoder layers. Returns all hidden states (embeddings
    /// output first) or only the last, none of them normalised by final_layer_norm.
    /// </summary>
    public List<Tensor> RunEncoder(Tensor inputIds, Tensor? attentionMask, int layerCount, bool outputHiddenStates)
    {
        if (inputIds.dim() != 2) throw new ArgumentException($"input_ids must be [batch, seq]; got [{string.Join(", ", inputIds.shape)}].", nameof(inputIds));
        if (attentionMask is not null && !attentionMask.shape.SequenceEqual(inputIds.shape))
            throw new ArgumentException($"attention_mask [{string.Join(", ", attentionMask.shape)}] must match input_ids [{string.Join(", ", inputIds.shape)}].", nameof(attentionMask));
        using var scope = NewDisposeScope();
        var h = embeddings.forward(inputIds);
        var mask = BuildAttentionMask(inputIds.shape[0], inputIds.shape[1], attentionMask, h.dtype, h.device);
        var states = encoder.Forward(h, mask, layerCount, outputHiddenStates);
        scope.MoveToOuter(states);
        return states;
    }

    public ClipTextOutput Forward(Tensor inputIds, Tensor? attentionMask = null, bool outputHiddenStates = false)
    {
        using var scope = NewDisposeScope();
        var states = RunEncoder(inputIds, attentionMask, encoder.Layers.Count, outputHiddenStates);
        var last = MixedPrecision.Forward(final_layer_norm, states[^1]);
        var pooled = Pool(last, inputIds);
        var kept = outputHiddenStates ? states : null;
        scope.MoveToOuter(last, pooled);
        if (kept is not null) scope.MoveToOuter(kept);
        return new ClipTextOutput(last, pooled, kept);
    }

    /// <summary>
    /// The causal mask CLIP always uses, plus the padding mask when given, both additive with finfo(dtype).min as
    /// transformers builds them (<c>_create_4d_causal_attention_mask</c> + <c>_prepare_4d_attention_mask</c>).
    /// </summary>
    public static Tensor BuildAttentionMask(long batch, long seq, Tensor? paddingMask, ScalarType dtype, Device device)
    {
        using var scope = NewDisposeScope();
        double min = finfo(dtype).min;
        var causal = full(seq, seq, min, dtype: dtype, device: device).triu(1).view(1, 1, seq, seq);
        if (paddingMask is null) return causal.MoveToOuterDisposeScope();
        var inverted = 1.0 - paddingMask.to(device).reshape(batch, 1, 1, seq).expand(batch, 1, seq, seq).to(dtype);
        var padding = inverted.masked_fill(inverted.to(ScalarType.Bool), min);
        return (padding + causal).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// transformers 4.47: configs with the legacy eos_token_id 2 pool at argmax(input_ids) (EOS has the largest id in
    /// CLIP's vocabulary); others at the first position holding eos_token_id.
    /// </summary>
    Tensor Pool(Tensor lastHiddenState, Tensor inputIds)
    {
        using var scope = NewDisposeScope();
        var ids = inputIds.to(ScalarType.Int32).to(lastHiddenState.device);
        var index = eosTokenId == 2 ? ids.argmax(-1) : ids.eq(eosTokenId).to(ScalarType.Int32).argmax(-1);
        var rows = arange(lastHiddenState.shape[0], dtype: ScalarType.Int64, device: lastHiddenState.device);
        return lastHiddenState[TensorIndex.Tensor(rows), TensorIndex.Tensor(index)].MoveToOuterDisposeScope();
    }
}
