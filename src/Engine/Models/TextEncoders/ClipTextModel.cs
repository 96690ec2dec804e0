using DreamBooth.Engine.IO;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.TextEncoders;

/// <summary>
/// transformers' <c>CLIPTextModel</c>, the text encoder of Stable Diffusion 1.x/2.x. Parameter names equal the
/// keys of <c>text_encoder/model.safetensors</c> (<c>text_model.embeddings.token_embedding.weight</c>, …).
/// </summary>
public sealed class ClipTextModel : nn.Module
{
    readonly ClipTextTransformer text_model;

    public ClipTextConfig Config { get; }
    public ClipTextTransformer TextModel => text_model;

    /// <summary>transformers' <c>gradient_checkpointing_enable()</c>; needs <see cref="CheckpointRunner"/>.</summary>
    public bool GradientCheckpointing
    {
        get => text_model.Encoder.GradientCheckpointing;
        set => text_model.Encoder.GradientCheckpointing = value;
    }

    /// <summary>The checkpoint function the encoder layers run through when <see cref="GradientCheckpointing"/> is on.</summary>
    public Func<Func<Tensor[], Tensor[]>, Tensor[], Tensor[]>? CheckpointRunner
    {
        get => text_model.Encoder.CheckpointRunner;
        set => text_model.Encoder.CheckpointRunner = value;
    }

    ClipTextModel(ClipTextConfig config) : base(nameof(ClipTextModel))
    {
        Config = config;
        text_model = new ClipTextTransformer(config);
        RegisterComponents();
    }

    /// <summary>A new model with transformers' random initialisation (normal std 0.02 embeddings, scaled projections, LN 1/0).</summary>
    public static ClipTextModel FromConfig(ClipTextConfig config)
    {
        var model = new ClipTextModel(config);
        ClipTextInit.InitWeights(model.text_model, config);
        return model;
    }

    /// <summary>
    /// Loads <c>config.json</c> + <c>model.safetensors</c> from a transformers component folder (e.g.
    /// <c>…/text_encoder</c>), straight into parameters of <paramref name="dtype"/> on <paramref name="device"/> (<see cref="EmptyWeights"/>), eval mode.
    /// A <c>text_model.embeddings.position_ids</c> entry written by older transformers is ignored; any other
    /// extra tensor is refused (InvalidDataException), missing ones or wrong shapes throw StateDictMismatchException.
    /// </summary>
    public static ClipTextModel FromPretrained(string componentDir, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        var config = ClipTextConfig.Load(Path.Combine(componentDir, "config.json"));
        // model.safetensors or its shards; a pytorch_model.bin is refused with what to do (PickleWeightsException).
        using var weights = DiffusersPipelineFolder.OpenWeights(componentDir);
        return EmptyWeights.Load(() => new ClipTextModel(config), weights, dtype, device, unexpected =>
        {
            var unknown = unexpected.Where(k => k != "text_model.embeddings.position_ids").ToList();
            if (unknown.Count > 0)
                throw new InvalidDataException($"'{weights.Path}' holds {unknown.Count} tensor(s) that CLIPTextModel does not have: " +
                    $"{string.Join(", ", unknown.Take(10))}{(unknown.Count > 10 ? ", …" : "")}. Is this the text encoder's weights file?");
        });
    }

    /// <summary>Writes <c>config.json</c> (every original key; torch_dtype updated) and <c>model.safetensors</c> (current dtype, or <paramref name="saveAs"/>).</summary>
    public void SavePretrained(string componentDir, ScalarType? saveAs = null)
    {
        Directory.CreateDirectory(componentDir);
        var dtype = saveAs ?? text_model.FinalLayerNorm.weight!.dtype;
        Config.Json.With(new Dictionary<string, JsonNode?> { ["torch_dtype"] = JsonValue.Create(TorchDTypeName(dtype)) })
            .Save(Path.Combine(componentDir, "config.json"));
        StateDictLoader.Save(this, Path.Combine(componentDir, "model.safetensors"), dtype: saveAs);
    }

    static string TorchDTypeName(ScalarType t) => t switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.Float16 => "float16",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float64 => "float64",
        _ => t.ToString().ToLowerInvariant(),
    };

    /// <summary>
    /// transformers' <c>CLIPTextModel.forward</c>. <paramref name="inputIds"/> [batch, seq] int64;
    /// <paramref name="attentionMask"/> [batch, seq] with 1 = attend, 0 = padding (combined with the causal mask).
    /// </summary>
    public ClipTextOutput Forward(Tensor inputIds, Tensor? attentionMask = null, bool outputHiddenStates = false)
        => text_model.Forward(inputIds, attentionMask, outputHiddenStates);

    /// <summary>
    /// The prompt embeddings of diffusers' <c>StableDiffusionPipeline.encode_prompt</c>: clipSkip 0 →
    /// last_hidden_state; clipSkip k ≥ 1 → final_layer_norm(hidden_states[-(k+1)]) (later layers are not run).
    /// </summary>
    public Tensor EncodeForDiffusion(Tensor inputIds, int clipSkip = 0, Tensor? attentionMask = null)
    {
        int layers = Config.NumHiddenLayers;
        if (clipSkip < 0 || clipSkip > layers)
            throw new ArgumentOutOfRangeException(nameof(clipSkip), clipSkip, $"clip skip must be between 0 and the number of layers ({layers}).");
        using var scope = NewDisposeScope();
        var states = text_model.RunEncoder(inputIds, attentionMask, layers - clipSkip, outputHiddenStates: false);
        return text_model.FinalLayerNorm.forward(states[^1]).MoveToOuterDisposeScope();
    }
}
