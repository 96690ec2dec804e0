using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.TextEncoders;

/// <summary>transformers' <c>CLIPTextEmbeddings</c>: token + learned absolute position embeddings.</summary>
public sealed class ClipTextEmbeddings : nn.Module<Tensor, Tensor>
{
    readonly Embedding token_embedding;
    readonly Embedding position_embedding;

    public Embedding TokenEmbedding => token_embedding;
    public Embedding PositionEmbedding => position_embedding;

    public ClipTextEmbeddings(ClipTextConfig config) : base(nameof(ClipTextEmbeddings))
    {
        token_embedding = Layers.Embedding(config.VocabSize, config.HiddenSize);
        position_embedding = Layers.Embedding(config.MaxPositionEmbeddings, config.HiddenSize);
        RegisterComponents();
    }

    public override Tensor forward(Tensor inputIds)
    {
        using var scope = NewDisposeScope();
        long seqLength = inputIds.shape[^1];
        long maxPositions = position_embedding.weight!.shape[0];
        if (seqLength > maxPositions)
            throw new ArgumentException($"Sequence length {seqLength} exceeds max_position_embeddings {maxPositions}.", nameof(inputIds));
        // transformers keeps a non-persistent position_ids buffer; computing it here keeps it out of the state dict
        // and lets .to(device) work without special cases.
        var positionIds = arange(seqLength, dtype: ScalarType.Int64, device: inputIds.device).unsqueeze(0);
        var embeddings = token_embedding.forward(inputIds) + position_embedding.forward(positionIds);
        return embeddings.MoveToOuterDisposeScope();
    }
}
