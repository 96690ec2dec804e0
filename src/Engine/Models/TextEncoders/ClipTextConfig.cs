using DreamBooth.Engine.IO;

namespace DreamBooth.Engine.Models.TextEncoders;

/// <summary>
/// transformers' <c>CLIPTextConfig</c> as read from <c>text_encoder/config.json</c>. Defaults are CLIPTextConfig's own
/// (transformers 4.47) for keys a file leaves out. The original <see cref="Json"/> is kept so that saving writes every
/// key back, including the ones the engine ignores.
/// </summary>
public sealed class ClipTextConfig
{
    public ConfigJson Json { get; }
    public int VocabSize { get; }
    public int HiddenSize { get; }
    public int IntermediateSize { get; }
    public int ProjectionDim { get; }
    public int NumHiddenLayers { get; }
    public int NumAttentionHeads { get; }
    public int MaxPositionEmbeddings { get; }
    public string HiddenAct { get; }
    public double LayerNormEps { get; }
    public double AttentionDropout { get; }
    public double InitializerRange { get; }
    public double InitializerFactor { get; }
    public int PadTokenId { get; }
    public int BosTokenId { get; }
    public int EosTokenId { get; }

    public int HeadDim => HiddenSize / NumAttentionHeads;

    public ClipTextConfig(ConfigJson json)
    {
        Json = json;
        VocabSize = json.Get("vocab_size", 49408);
        HiddenSize = json.Get("hidden_size", 512);
        IntermediateSize = json.Get("intermediate_size", 2048);
        ProjectionDim = json.Get("projection_dim", 512);
        NumHiddenLayers = json.Get("num_hidden_layers", 12);
        NumAttentionHeads = json.Get("num_attention_heads", 8);
        MaxPositionEmbeddings = json.Get("max_position_embeddings", 77);
        HiddenAct = json.Get("hidden_act", "quick_gelu");
        LayerNormEps = json.Get("layer_norm_eps", 1e-5);
        AttentionDropout = json.Get("attention_dropout", 0.0);
        InitializerRange = json.Get("initializer_range", 0.02);
        InitializerFactor = json.Get("initializer_factor", 1.0);
        PadTokenId = json.Get("pad_token_id", 1);
        BosTokenId = json.Get("bos_token_id", 49406);
        EosTokenId = json.Get("eos_token_id", 49407);

        if (!ClipActivation.IsKnown(HiddenAct))
            throw json.Unsupported("hidden_act", $"the CLIP text encoder supports {string.Join(", ", ClipActivation.Names)}");
        foreach (var (key, value) in new[] { ("vocab_size", VocabSize), ("hidden_size", HiddenSize), ("intermediate_size", IntermediateSize),
                     ("num_hidden_layers", NumHiddenLayers), ("num_attention_heads", NumAttentionHeads), ("max_position_embeddings", MaxPositionEmbeddings) })
            if (value <= 0) throw json.Unsupported(key, "must be positive");
        if (HiddenSize % NumAttentionHeads != 0)
            throw json.Unsupported("num_attention_heads", $"hidden_size {HiddenSize} must be divisible by the number of heads");
        // Dropout only acts in training and every SD text encoder has 0; refuse rather than silently ignore it.
        if (AttentionDropout != 0.0)
            throw json.Unsupported("attention_dropout", "attention dropout is not implemented; Stable Diffusion text encoders use 0.0");
    }

    public static ClipTextConfig Load(string configPath) => new(ConfigJson.Load(configPath));
    public static ClipTextConfig Parse(string json) => new(ConfigJson.Parse(json));
}
