using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;
using DreamBooth.Engine.Models.TextEncoders;

namespace DreamBooth.Engine.Tests.Models.TextEncoders;

/// <summary>
/// Config reading and the pieces that differ between SD 1.x and 2.x text encoders. The real configs in
/// tests/fixtures/configs come from copies of the hub folders found with the code search: sd-v1-4 from
/// github.com/JSchalter/models stable-diffusion-v1-4/text_encoder/config.json (@dc3b736); sd-2 from
/// github.com/Luoyukeji/static-f stable-diffusion-2-1/text_encoder/config.json (@899bfe3), whose _name_or_path
/// "hf-models/stable-diffusion-v2-768x768/text_encoder" is the SD 2 (768) text encoder.
/// </summary>
public sealed class TextEncoderConfigTests
{
    static string ConfigPath(string name) => Path.Combine(Fixtures.Root, "configs", name, "text_encoder_config.json");

    /// <summary>A small config; <paramref name="changes"/> is a JSON object of keys to override.</summary>
    static ClipTextConfig Tiny(string changes = "{}")
    {
        var json = ConfigJson.Parse("""
            { "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4,
              "vocab_size": 100, "max_position_embeddings": 10, "eos_token_id": 99 }
            """);
        var overrides = JsonNode.Parse(changes)!.AsObject().ToDictionary(p => p.Key, p => p.Value);
        return new ClipTextConfig(json.With(overrides));
    }

    [Fact]
    public void ReadsStableDiffusion14Config()
    {
        var c = ClipTextConfig.Load(ConfigPath("sd-v1-4"));
        Assert.Equal((49408, 768, 3072, 12, 12, 77), (c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.MaxPositionEmbeddings));
        Assert.Equal("quick_gelu", c.HiddenAct);
        Assert.Equal(64, c.HeadDim);
        Assert.Equal(1e-5, c.LayerNormEps);
        Assert.Equal((0, 1, 2), (c.BosTokenId, c.PadTokenId, c.EosTokenId));   // legacy ids → argmax pooling
        Assert.Equal(512, c.ProjectionDim);   // absent in this file: CLIPTextConfig's default
    }

    [Fact]
    public void ReadsStableDiffusion2Config()
    {
        var c = ClipTextConfig.Load(ConfigPath("sd-2"));
        Assert.Equal("gelu", c.HiddenAct);
        Assert.Equal((1024, 4096, 23, 16, 64, 512), (c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.HeadDim, c.ProjectionDim));
    }

    [Fact]
    public void RefusesUnknownActivationNamingKeyAndValue()
    {
        var e = Assert.Throws<ModelConfigException>(() => Tiny("""{ "hidden_act": "swish" }"""));
        Assert.Equal("hidden_act", e.Key);
        Assert.Contains("\"swish\"", e.Message);
        Assert.Contains("quick_gelu", e.Message);
    }

    [Fact]
    public void RefusesHeadsThatDoNotDivideHiddenSize()
    {
        var e = Assert.Throws<ModelConfigException>(() => Tiny("""{ "num_attention_heads": 5 }"""));
        Assert.Equal("num_attention_heads", e.Key);
    }

    [Fact]
    public void RefusesAttentionDropout()
    {
        var e = Assert.Throws<ModelConfigException>(() => Tiny("""{ "attention_dropout": 0.1 }"""));
        Assert.Equal("attention_dropout", e.Key);
    }

    [Theory]
    [InlineData("quick_gelu")]
    [InlineData("gelu")]
    [InlineData("gelu_new")]
    [InlineData("gelu_pytorch_tanh")]
    public void MlpAppliesConfiguredActivation(string act)
    {
        using var model = ClipTextModel.FromConfig(Tiny($$"""{ "hidden_act": "{{act}}" }"""));
        var mlp = model.TextModel.Encoder.Layers[0].Mlp;
        Assert.Equal(act, mlp.ActivationName);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var x = randn(3, 5, 16, dtype: ScalarType.Float64) * 3;
        mlp.to(ScalarType.Float64);
        var h = x.matmul(mlp.Fc1.weight!.t()) + mlp.Fc1.bias!;
        var a = act switch
        {
            "quick_gelu" => h / (1 + (-1.702 * h).exp()),
            "gelu" => 0.5 * h * (1 + (h / Math.Sqrt(2)).erf()),
            _ => 0.5 * h * (1 + (Math.Sqrt(2 / Math.PI) * (h + 0.044715 * h * h * h)).tanh()),
        };
        var expected = a.matmul(mlp.Fc2.weight!.t()) + mlp.Fc2.bias!;
        var actual = mlp.forward(x);
        Assert.True(Fixtures.MaxAbs(actual, expected) < 1e-12, $"{act}: max abs {Fixtures.MaxAbs(actual, expected):E2}");
        // and the activations are really different functions on this input
        var identityPath = h.matmul(mlp.Fc2.weight!.t()) + mlp.Fc2.bias!;
        Assert.True(Fixtures.MaxAbs(actual, identityPath) > 1e-2);
        if (act != "quick_gelu")
        {
            var quick = (h / (1 + (-1.702 * h).exp())).matmul(mlp.Fc2.weight!.t()) + mlp.Fc2.bias!;
            Assert.True(Fixtures.MaxAbs(actual, quick) > 1e-3, $"{act} looks like quick_gelu");
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(8)]
    public void AttentionMatchesManualCausalSoftmaxForHeadCount(int heads)
    {
        var config = Tiny($$"""{ "num_attention_heads": {{heads}} }""");
        using var model = ClipTextModel.FromConfig(config);
        var attn = model.TextModel.Encoder.Layers[0].SelfAttn;
        attn.to(ScalarType.Float64);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        long b = 2, s = 7, d = 16, hd = d / heads;
        var x = randn(b, s, d, dtype: ScalarType.Float64);
        var paddingMask = ones(b, s, dtype: ScalarType.Int64);
        paddingMask[1, TensorIndex.Slice(5)] = tensor(0L);
        var mask = ClipTextTransformer.BuildAttentionMask(b, s, paddingMask, ScalarType.Float64, CPU);
        var actual = attn.forward(x, mask);

        Tensor Proj(TorchSharp.Modules.Linear l) => x.matmul(l.weight!.t()) + l.bias!;
        var q = Proj(attn.QProj); var k = Proj(attn.KProj); var v = Proj(attn.VProj);
        var outs = new List<Tensor>();
        for (int h = 0; h < heads; h++)
        {
            var sl = TensorIndex.Slice(h * hd, (h + 1) * hd);
            var qh = q[.., .., sl]; var kh = k[.., .., sl]; var vh = v[.., .., sl];
            var scores = qh.matmul(kh.transpose(1, 2)) / Math.Sqrt(hd);
            // causal: key j > query i is hidden; padding: keys where the mask is 0 are hidden
            var hide = ones(s, s, dtype: ScalarType.Bool).triu(1).unsqueeze(0) | paddingMask.eq(0).unsqueeze(1);
            scores = scores.masked_fill(hide, double.NegativeInfinity);
            outs.Add(scores.softmax(-1).matmul(vh));
        }
        var expected = cat(outs, 2).matmul(attn.OutProj.weight!.t()) + attn.OutProj.bias!;
        double err = Fixtures.MaxAbs(actual, expected);
        Assert.True(err < 1e-10, $"{heads} heads: max abs {err:E2}");
    }

    [Fact]
    public void LegacyEosTokenIdPoolsAtArgmaxOfIds()
    {
        // SD 2 tokenizers pad with id 0 and configs say eos_token_id 2: transformers pools at argmax(ids).
        using var model = ClipTextModel.FromConfig(Tiny("""{ "eos_token_id": 2 }"""));
        using var _ = no_grad();
        using var ids = tensor(new long[,] { { 98, 5, 2, 99, 0, 0 }, { 98, 99, 0, 0, 0, 0 } });
        using var output = model.Forward(ids);
        Assert.True(output.PoolerOutput[0].Equals(output.LastHiddenState[0, 3]));
        Assert.True(output.PoolerOutput[1].Equals(output.LastHiddenState[1, 1]));
    }

    [Fact]
    public void RandomInitFollowsTransformers()
    {
        using var model = ClipTextModel.FromConfig(Tiny("""{ "hidden_size": 64, "num_hidden_layers": 4, "vocab_size": 4000 }"""));
        var sd = model.state_dict();
        double Std(string key) => sd[key].std().item<float>();
        Assert.InRange(Std("text_model.embeddings.token_embedding.weight"), 0.019, 0.021);
        double inStd = Math.Pow(64, -0.5) * Math.Pow(8, -0.5), outStd = Math.Pow(64, -0.5), fcStd = Math.Pow(128, -0.5);
        Assert.InRange(Std("text_model.encoder.layers.0.self_attn.q_proj.weight"), inStd * 0.9, inStd * 1.1);
        Assert.InRange(Std("text_model.encoder.layers.0.self_attn.out_proj.weight"), outStd * 0.9, outStd * 1.1);
        Assert.InRange(Std("text_model.encoder.layers.0.mlp.fc1.weight"), fcStd * 0.9, fcStd * 1.1);
        Assert.Equal(0.0, sd["text_model.encoder.layers.0.mlp.fc1.bias"].abs().max().item<float>());
        Assert.True(sd["text_model.final_layer_norm.weight"].eq(1).all().item<bool>());
        Assert.True(sd["text_model.encoder.layers.3.layer_norm2.bias"].eq(0).all().item<bool>());
        Assert.Equal(4 * 16 + 2 + 2, sd.Count);   // 16 tensors per layer, 2 embeddings, final LN
    }

    [Fact]
    public void ClipSkipTakesEarlierLayerThroughFinalNorm()
    {
        using var model = ClipTextModel.FromConfig(Tiny());
        using var _ = no_grad();
        using var ids = tensor(new long[,] { { 98, 5, 6, 99, 99 } });
        using var all = model.Forward(ids, outputHiddenStates: true);
        using var skip1 = model.EncodeForDiffusion(ids, 1);
        using var skip2 = model.EncodeForDiffusion(ids, 2);
        using var ln1 = model.TextModel.FinalLayerNorm.forward(all.HiddenStates![^2]);
        using var ln2 = model.TextModel.FinalLayerNorm.forward(all.HiddenStates![0]);
        Assert.True(skip1.Equals(ln1));
        Assert.True(skip2.Equals(ln2));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.EncodeForDiffusion(ids, 3));
    }

    [Fact]
    public void RefusesSequencesLongerThanPositions()
    {
        using var model = ClipTextModel.FromConfig(Tiny());
        using var ids = zeros(1, 11, dtype: ScalarType.Int64);
        Assert.Throws<ArgumentException>(() => model.Forward(ids));
    }

    [Fact]
    public void GradientCheckpointingRunsEveryLayerThroughTheRunnerWithSameResult()
    {
        using var model = ClipTextModel.FromConfig(Tiny());
        using var ids = tensor(new long[,] { { 98, 5, 6, 99, 99 } });
        using var mask = tensor(new long[,] { { 1, 1, 1, 1, 0 } });
        model.train();
        using var plain = model.Forward(ids, mask);

        int calls = 0;
        model.GradientCheckpointing = true;
        Assert.Throws<InvalidOperationException>(() => model.Forward(ids, mask));
        model.CheckpointRunner = (fn, inputs) => { calls++; Assert.Equal(2, inputs.Length); return fn(inputs); };
        using var checkpointed = model.Forward(ids, mask);
        Assert.Equal(2, calls);
        Assert.True(checkpointed.LastHiddenState.Equals(plain.LastHiddenState));

        model.eval();   // transformers checkpoints only in training mode
        using var evalOut = model.Forward(ids, mask);
        Assert.Equal(2, calls);
    }
}
