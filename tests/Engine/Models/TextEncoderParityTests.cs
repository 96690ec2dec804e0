using DreamBooth.Engine.Models.TextEncoders;
using Xunit.Abstractions;

namespace DreamBooth.Engine.Tests.Models.TextEncoders;

/// <summary>CLIPTextModel on tiny-sd vs transformers 4.47 (reference/text_encoder.safetensors).</summary>
public sealed class TextEncoderParityTests : IDisposable
{
    readonly ITestOutputHelper log;
    readonly ClipTextModel model;
    readonly Dictionary<string, Tensor> reference;
    readonly double rtol, atol;

    public TextEncoderParityTests(ITestOutputHelper log)
    {
        this.log = log;
        model = ClipTextModel.FromPretrained(Path.Combine(Fixtures.TinySd, "text_encoder"));
        reference = Fixtures.Load("text_encoder.safetensors");
        var tol = TextEncoderManifest.Case("text_encoder").GetProperty("tolerance");
        rtol = tol.GetProperty("rtol").GetDouble();
        atol = tol.GetProperty("atol").GetDouble();
    }

    public void Dispose()
    {
        model.Dispose();
        foreach (var t in reference.Values) t.Dispose();
    }

    void Check(Tensor actual, string key)
    {
        var expected = reference[key];
        double rel = Fixtures.RelativeError(actual, expected);
        double maxAbs = Fixtures.MaxAbs(actual, expected);
        log.WriteLine($"{key}: relative {rel:E3} (tolerance {rtol:E0}), max abs {maxAbs:E3}");
        Assert.True(rel <= rtol, $"{key}: relative error {rel:E3} exceeds {rtol:E1}");
        // element-wise as torch.allclose(actual, expected, rtol, atol)
        using var a = actual.detach().to(ScalarType.Float64);
        using var b = expected.to(ScalarType.Float64);
        Assert.True(a.allclose(b, rtol, atol), $"{key}: not allclose (rtol {rtol}, atol {atol}); max abs {maxAbs:E3}");
    }

    [Fact]
    public void UnmaskedOutputsMatchTransformers()
    {
        using var _ = no_grad();
        var ids = reference["input_ids"];
        using var output = model.Forward(ids, outputHiddenStates: true);
        Assert.NotNull(output.HiddenStates);
        Assert.Equal(model.Config.NumHiddenLayers + 1, output.HiddenStates!.Count);
        Check(output.LastHiddenState, "last_hidden_state");
        Check(output.HiddenStates[0], "embeddings_output");
        Check(output.HiddenStates[^2], "penultimate_hidden_state");
        Check(output.PoolerOutput, "pooler_output");
    }

    [Fact]
    public void ClipSkipOneMatchesPenultimateThroughFinalLayerNorm()
    {
        using var _ = no_grad();
        using var skip1 = model.EncodeForDiffusion(reference["input_ids"], clipSkip: 1);
        Check(skip1, "penultimate_final_ln");
    }

    [Fact]
    public void ClipSkipZeroIsLastHiddenState()
    {
        using var _ = no_grad();
        var ids = reference["input_ids"];
        using var output = model.Forward(ids);
        using var embeds = model.EncodeForDiffusion(ids);
        Assert.True(embeds.Equals(output.LastHiddenState));
        Check(embeds, "last_hidden_state");
    }

    [Fact]
    public void PaddingMaskMatchesTransformers()
    {
        using var _ = no_grad();
        var mask = reference["attention_mask"];
        Assert.True(mask.sum().item<long>() < mask.numel(), "fixture mask should mask some padding");
        using var output = model.Forward(reference["input_ids"], mask);
        Check(output.LastHiddenState, "last_hidden_state_masked");
        // The mask must change something: padded positions differ from the unmasked run.
        double rel = Fixtures.RelativeError(output.LastHiddenState, reference["last_hidden_state"]);
        Assert.True(rel > 1e-3, $"masked and unmasked outputs are too close ({rel:E2})");
    }

    [Fact]
    public void PoolerPicksFirstEosForModernEosTokenId()
    {
        // tiny-sd has eos_token_id 49407 (not the legacy 2): the first EOS, even though padding repeats 49407.
        Assert.Equal(49407, model.Config.EosTokenId);
        using var _ = no_grad();
        var ids = reference["input_ids"];
        using var output = model.Forward(ids);
        for (int row = 0; row < ids.shape[0]; row++)
        {
            long firstEos = ids[row].eq(49407).nonzero()[0, 0].item<long>();
            Assert.True(output.PoolerOutput[row].Equals(output.LastHiddenState[row, firstEos]));
        }
    }
}
