using System.Text.Json.Nodes;

namespace DreamBooth.Engine.Sources;

/// <summary>
/// Infers diffusers/transformers configs from the tensor shapes of an LDM single file (what diffusers'
/// <c>create_unet_diffusers_config</c> etc. read from the original yaml). Values the shapes cannot tell
/// (head counts, image size, prediction type) come from <see cref="ImportOptions"/> or SD 1.x/2.x conventions,
/// and every value is reported with where it came from.
/// </summary>
public static class LdmConfigInference
{
    /// <summary>SD 2.x (OpenCLIP ViT-H) conditions on 1024-wide text features; SD 1.x (CLIP ViT-L) on 768.</summary>
    public const int Sd2ContextDim = 1024;

    public static JsonObject Unet(IReadOnlyDictionary<string, long[]> shapes, UnetLdmLayout layout, ImportOptions options, int vaeScaleFactor, List<string> report)
    {
        long[] S(string key) => shapes.TryGetValue(key, out var s) ? s : throw new ModelSourceException($"The UNet lacks '{UnetKeyMap.LdmPrefix}{key}'.");
        var convIn = S("input_blocks.0.0.weight");
        int n = layout.LayersPerBlock;
        var channels = Enumerable.Range(0, layout.Levels).Select(i => (int)S($"input_blocks.{1 + i * (n + 1)}.0.out_layers.3.weight")[0]).ToArray();
        var toK = shapes.Where(kv => kv.Key.EndsWith("attn2.to_k.weight", StringComparison.Ordinal)).Select(kv => kv.Value).FirstOrDefault();
        int contextDim = toK is null ? Sd2ContextDim : (int)toK[1];
        var projIn = shapes.Where(kv => kv.Key.EndsWith(".proj_in.weight", StringComparison.Ordinal)).Select(kv => kv.Value).FirstOrDefault();
        bool linear = projIn is { Length: 2 };
        var firstAttention = shapes.Keys.Where(k => k.Contains(".transformer_blocks.", StringComparison.Ordinal))
            .Select(k => k[..k.IndexOf(".transformer_blocks.", StringComparison.Ordinal)]).OrderBy(k => k, StringComparer.Ordinal).FirstOrDefault();
        int transformerLayers = firstAttention is null ? 1
            : UnetLdmLayout.BlockIndices(shapes.Keys.Where(k => k.StartsWith(firstAttention + ".", StringComparison.Ordinal)).Select(k => k[(firstAttention.Length + 1)..]), "transformer_blocks.").Count;
        bool sd2 = contextDim == Sd2ContextDim;
        int timeEmbed = (int)S("time_embed.0.weight")[0];

        JsonNode heads;
        if (options.AttentionHeadDim is { } h) { heads = JsonArrayOrInt(h); report.Add($"unet.attention_head_dim = {heads.ToJsonString()} (given)"); }
        else if (sd2 && channels.All(c => c % 64 == 0))
        {
            heads = new JsonArray(channels.Select(c => (JsonNode)JsonValue.Create(c / 64)!).ToArray());
            report.Add($"unet.attention_head_dim = {heads.ToJsonString()} (SD 2.x convention: 64 channels per head)");
        }
        else { heads = 8; report.Add("unet.attention_head_dim = 8 (SD 1.x convention: 8 heads)"); }

        int imageSize = ImageSize(options, sd2);
        var down = layout.DownHasAttention.Select(a => a ? "CrossAttnDownBlock2D" : "DownBlock2D").ToArray();
        var up = layout.UpHasAttention.Select(a => a ? "CrossAttnUpBlock2D" : "UpBlock2D").ToArray();
        var config = new JsonObject
        {
            ["_class_name"] = "UNet2DConditionModel",
            ["_diffusers_version"] = "0.32.2",
            ["act_fn"] = "silu",
            ["attention_head_dim"] = heads,
            ["block_out_channels"] = Ints(channels),
            ["center_input_sample"] = false,
            ["cross_attention_dim"] = contextDim,
            ["down_block_types"] = Strings(down),
            ["downsample_padding"] = 1,
            ["dropout"] = 0.0,
            ["flip_sin_to_cos"] = true,
            ["freq_shift"] = 0,
            ["in_channels"] = (int)convIn[1],
            ["layers_per_block"] = n,
            ["mid_block_scale_factor"] = 1,
            ["mid_block_type"] = layout.MidHasAttention ? "UNetMidBlock2DCrossAttn" : "UNetMidBlock2D",
            ["norm_eps"] = 1e-5,
            ["norm_num_groups"] = 32,
            ["only_cross_attention"] = false,
            ["out_channels"] = (int)S("out.2.weight")[0],
            ["sample_size"] = imageSize / vaeScaleFactor,
            ["time_embedding_dim"] = timeEmbed == 4 * channels[0] ? null : timeEmbed,
            ["transformer_layers_per_block"] = transformerLayers,
            ["up_block_types"] = Strings(up),
            ["upcast_attention"] = options.UpcastAttention ?? false,
            ["use_linear_projection"] = linear,
        };
        report.Add($"unet: in_channels {convIn[1]}, block_out_channels [{string.Join(", ", channels)}], layers_per_block {n}, " +
                   $"down [{string.Join(", ", down)}], up [{string.Join(", ", up)}], cross_attention_dim {contextDim} (attn2.to_k), " +
                   $"use_linear_projection {linear.ToString().ToLowerInvariant()} (proj_in rank), transformer_layers_per_block {transformerLayers} (from shapes)");
        report.Add($"unet.sample_size = {imageSize / vaeScaleFactor} (image size {imageSize} / VAE factor {vaeScaleFactor}; {(options.ImageSize is null ? "convention" : "given")})");
        return config;
    }

    public static JsonObject Vae(IReadOnlyDictionary<string, long[]> shapes, ImportOptions options, bool sd2, List<string> report)
    {
        long[] S(string key) => shapes.TryGetValue(key, out var s) ? s : throw new ModelSourceException($"The VAE lacks '{VaeKeyMap.LdmPrefix}{key}'.");
        int levels = UnetLdmLayout.BlockIndices(shapes.Keys, "encoder.down.").Count;
        if (levels == 0) throw new ModelSourceException($"The checkpoint has no VAE encoder ({VaeKeyMap.LdmPrefix}encoder.down.*).");
        int layers = UnetLdmLayout.BlockIndices(shapes.Keys.Where(k => k.StartsWith("encoder.down.0.", StringComparison.Ordinal)).Select(k => k["encoder.down.0.".Length..]), "block.").Count;
        var channels = Enumerable.Range(0, levels).Select(i => (int)S($"encoder.down.{i}.block.0.conv2.weight")[0]).ToArray();
        int imageSize = ImageSize(options, sd2);
        bool midAttention = shapes.ContainsKey("encoder.mid.attn_1.q.weight");
        var config = new JsonObject
        {
            ["_class_name"] = "AutoencoderKL",
            ["_diffusers_version"] = "0.32.2",
            ["act_fn"] = "silu",
            ["block_out_channels"] = Ints(channels),
            ["down_block_types"] = Strings(Enumerable.Repeat("DownEncoderBlock2D", levels).ToArray()),
            ["force_upcast"] = true,
            ["in_channels"] = (int)S("encoder.conv_in.weight")[1],
            ["latent_channels"] = (int)S("decoder.conv_in.weight")[1],
            ["layers_per_block"] = layers,
            ["mid_block_add_attention"] = midAttention,
            ["norm_num_groups"] = 32,
            ["out_channels"] = (int)S("decoder.conv_out.weight")[0],
            ["sample_size"] = imageSize,
            ["scaling_factor"] = options.VaeScalingFactor ?? 0.18215,
            ["up_block_types"] = Strings(Enumerable.Repeat("UpDecoderBlock2D", levels).ToArray()),
            ["use_post_quant_conv"] = shapes.ContainsKey("post_quant_conv.weight"),
            ["use_quant_conv"] = shapes.ContainsKey("quant_conv.weight"),
        };
        report.Add($"vae: block_out_channels [{string.Join(", ", channels)}], layers_per_block {layers}, latent_channels {config["latent_channels"]}, mid attention {midAttention.ToString().ToLowerInvariant()} (from shapes); scaling_factor {config["scaling_factor"]} ({(options.VaeScalingFactor is null ? "SD convention" : "given")})");
        return config;
    }

    /// <summary>SD 1.x: transformers CLIPTextModel keys (prefix stripped, <c>text_model.</c> level present).</summary>
    public static JsonObject Clip(IReadOnlyDictionary<string, long[]> shapes, ImportOptions options, List<string> report)
    {
        long[] S(string key) => shapes.TryGetValue(key, out var s) ? s : throw new ModelSourceException($"The text encoder lacks '{ClipKeyMap.LdmPrefix}{key}'.");
        var token = S("text_model.embeddings.token_embedding.weight");
        int layers = UnetLdmLayout.BlockIndices(shapes.Keys, "text_model.encoder.layers.").Count;
        int hidden = (int)token[1];
        int heads = Heads(hidden, options, report);
        report.Add($"text_encoder (CLIP, SD 1.x): hidden_size {hidden}, layers {layers}, vocab {token[0]} (from shapes); hidden_act quick_gelu (CLIP ViT-L)");
        return TextConfig((int)token[0], hidden, (int)S("text_model.encoder.layers.0.mlp.fc1.weight")[0], layers, heads,
            (int)S("text_model.embeddings.position_embedding.weight")[0], "quick_gelu", hidden);
    }

    /// <summary>SD 2.x: OpenCLIP keys (prefix stripped).</summary>
    public static JsonObject OpenClip(IReadOnlyDictionary<string, long[]> shapes, int layers, ImportOptions options, List<string> report)
    {
        long[] S(string key) => shapes.TryGetValue(key, out var s) ? s : throw new ModelSourceException($"The text encoder lacks '{OpenClipKeyMap.LdmPrefix}{key}'.");
        var token = S("token_embedding.weight");
        int hidden = (int)token[1];
        int heads = Heads(hidden, options, report);
        int projection = shapes.TryGetValue("text_projection", out var p) ? (int)p[1] : 512;
        report.Add($"text_encoder (OpenCLIP, SD 2.x): hidden_size {hidden}, layers {layers}, vocab {token[0]} (from shapes); hidden_act gelu (OpenCLIP)");
        return TextConfig((int)token[0], hidden, (int)S("transformer.resblocks.0.mlp.c_fc.weight")[0], layers, heads,
            (int)S("positional_embedding")[0], "gelu", projection);
    }

    static JsonObject TextConfig(int vocab, int hidden, int intermediate, int layers, int heads, int positions, string act, int projection) => new()
    {
        ["architectures"] = new JsonArray("CLIPTextModel"),
        ["attention_dropout"] = 0.0,
        ["bos_token_id"] = 0,
        ["dropout"] = 0.0,
        ["eos_token_id"] = 2,
        ["hidden_act"] = act,
        ["hidden_size"] = hidden,
        ["initializer_factor"] = 1.0,
        ["initializer_range"] = 0.02,
        ["intermediate_size"] = intermediate,
        ["layer_norm_eps"] = 1e-5,
        ["max_position_embeddings"] = positions,
        ["model_type"] = "clip_text_model",
        ["num_attention_heads"] = heads,
        ["num_hidden_layers"] = layers,
        ["pad_token_id"] = 1,
        ["projection_dim"] = projection,
        ["torch_dtype"] = "float32",
        ["vocab_size"] = vocab,
    };

    /// <summary>The scheduler SD 1.x/2.x were trained with (scaled-linear betas 0.00085..0.012, 1000 steps).</summary>
    public static JsonObject Scheduler(string predictionType) => new()
    {
        ["_class_name"] = "PNDMScheduler",
        ["_diffusers_version"] = "0.32.2",
        ["beta_end"] = 0.012,
        ["beta_schedule"] = "scaled_linear",
        ["beta_start"] = 0.00085,
        ["clip_sample"] = false,
        ["num_train_timesteps"] = 1000,
        ["prediction_type"] = predictionType,
        ["set_alpha_to_one"] = false,
        ["skip_prk_steps"] = true,
        ["steps_offset"] = 1,
        ["timestep_spacing"] = "leading",
        ["trained_betas"] = null,
    };

    static int Heads(int hidden, ImportOptions options, List<string> report)
    {
        if (options.TextEncoderHeads is { } given) { report.Add($"text_encoder.num_attention_heads = {given} (given)"); return given; }
        if (hidden % 64 != 0)
            throw new ModelSourceException($"The text encoder's width {hidden} is not a multiple of 64, so its head count cannot be inferred; pass it in ImportOptions.TextEncoderHeads.");
        report.Add($"text_encoder.num_attention_heads = {hidden / 64} (CLIP convention: 64 channels per head)");
        return hidden / 64;
    }

    /// <summary>SD 2.x single files are most often the 768 v-prediction model (diffusers defaults to stable-diffusion-2-1 too).</summary>
    internal static int ImageSize(ImportOptions options, bool sd2) => options.ImageSize ?? (sd2 ? 768 : 512);

    static JsonNode JsonArrayOrInt(int[] values)
        => values.Length == 1 ? JsonValue.Create(values[0])! : new JsonArray(values.Select(v => (JsonNode)JsonValue.Create(v)!).ToArray());
    static JsonArray Ints(int[] values) => new(values.Select(v => (JsonNode)JsonValue.Create(v)!).ToArray());
    static JsonArray Strings(string[] values) => new(values.Select(v => (JsonNode)JsonValue.Create(v)!).ToArray());
}
