using DreamBooth.Engine.Models.TextEncoders;

namespace DreamBooth.Engine.Tests.Models.TextEncoders;

/// <summary>What DreamBooth's text-encoder training needs: gradients reach every parameter by its diffusers name.</summary>
public sealed class TextEncoderTrainingTests
{
    [Fact]
    public void BackwardReachesEveryParameter()
    {
        using var model = ClipTextModel.FromPretrained(Path.Combine(Fixtures.TinySd, "text_encoder"));
        model.train();
        using var scope = NewDisposeScope();
        var ids = tensor(new long[,] { { 49406, 320, 1125, 539, 48136, 1929, 49407, 49407 } });
        var output = model.Forward(ids);
        (output.LastHiddenState.square().mean() + output.PoolerOutput.sum()).backward();

        foreach (var (name, p) in model.named_parameters())
        {
            Assert.True(p.grad is not null, $"{name} got no gradient");
            Assert.True(p.grad!.abs().sum().item<float>() > 0, $"{name} has an all-zero gradient");
        }
        // Only the token rows that were used get embedding gradients.
        var tokenGrad = model.TextModel.Embeddings.TokenEmbedding.weight!.grad!;
        var usedRows = tokenGrad.abs().sum(1).gt(0).nonzero().flatten();
        Assert.Equal(new long[] { 320, 539, 1125, 1929, 48136, 49406, 49407 }, usedRows.data<long>().ToArray());
        // Position rows past the 8-token sequence are never looked up.
        var posGrad = model.TextModel.Embeddings.PositionEmbedding.weight!.grad!;
        Assert.Equal(0f, posGrad[TensorIndex.Slice(8)].abs().sum().item<float>());
    }
}
