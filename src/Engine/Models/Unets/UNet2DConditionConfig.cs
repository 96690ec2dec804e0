using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;

namespace DreamBooth.Engine.Models.Unets;

/// <summary>
/// The <c>unet/config.json</c> of a UNet2DConditionModel, resolved as diffusers' constructor resolves it (ints broadcast
/// to per-block lists, SD-1 naming of attention_head_dim). Keys this engine cannot honour are refused with the key and
/// value named; unknown keys are kept in <see cref="Json"/> for saving.
/// </summary>
public sealed class UNet2DConditionConfig
{
    public ConfigJson Json { get; }

    public int InChannels { get; }
    public int OutChannels { get; }
    public int? SampleSize { get; }
    public bool CenterInputSample { get; }
    public bool FlipSinToCos { get; }
    public double FreqShift { get; }
    public string[] DownBlockTypes { get; }
    public string[] UpBlockTypes { get; }
    public int[] BlockOutChannels { get; }
    public int[] LayersPerBlock { get; }
    public int DownsamplePadding { get; }
    public double MidBlockScaleFactor { get; }
    public double Dropout { get; }
    public string ActFn { get; }
    public int NormNumGroups { get; }
    public double NormEps { get; }
    public int[] CrossAttentionDim { get; }
    public int[] TransformerLayersPerBlock { get; }
    /// <summary>Heads per down block: num_attention_heads, or (diffusers' legacy naming) attention_head_dim.</summary>
    public int[] NumAttentionHeads { get; }
    public bool[] OnlyCrossAttention { get; }
    public bool UseLinearProjection { get; }
    public bool UpcastAttention { get; }
    public int TimeEmbedDim { get; }
    public int ConvInKernel { get; }
    public int ConvOutKernel { get; }

    static readonly string[] DownTypes = { "CrossAttnDownBlock2D", "DownBlock2D" };
    static readonly string[] UpTypes = { "CrossAttnUpBlock2D", "UpBlock2D" };

    public UNet2DConditionConfig(ConfigJson json)
    {
        Json = json;
        RefuseUnlessDefault(json);

        DownBlockTypes = json.Get("down_block_types", new[] { "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D" });
        UpBlockTypes = json.Get("up_block_types", new[] { "UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D" });
        BlockOutChannels = json.Get("block_out_channels", new[] { 320, 640, 1280, 1280 });
        int n = DownBlockTypes.Length;
        foreach (var t in DownBlockTypes) if (!DownTypes.Contains(t)) throw json.Unsupported("down_block_types", $"block type '{t}' is not implemented; supported: {string.Join(", ", DownTypes)}");
        foreach (var t in UpBlockTypes) if (!UpTypes.Contains(t)) throw json.Unsupported("up_block_types", $"block type '{t}' is not implemented; supported: {string.Join(", ", UpTypes)}");
        if (UpBlockTypes.Length != n) throw json.Unsupported("up_block_types", "diffusers requires as many up_block_types as down_block_types");
        if (BlockOutChannels.Length != n) throw json.Unsupported("block_out_channels", "diffusers requires one entry per down block");

        InChannels = json.Get("in_channels", 4);
        OutChannels = json.Get("out_channels", 4);
        SampleSize = json.Get<int?>("sample_size", null);
        CenterInputSample = json.Get("center_input_sample", false);
        FlipSinToCos = json.Get("flip_sin_to_cos", true);
        FreqShift = json.Get("freq_shift", 0.0);
        LayersPerBlock = PerBlock(json, "layers_per_block", 2, n);
        DownsamplePadding = json.Get("downsample_padding", 1);
        MidBlockScaleFactor = json.Get("mid_block_scale_factor", 1.0);
        Dropout = json.Get("dropout", 0.0);
        ActFn = json.Get("act_fn", "silu");
        if (!Activations.IsKnown(ActFn)) throw json.Unsupported("act_fn", "unknown activation");
        if (json.Root.TryGetPropertyValue("norm_num_groups", out var g) && g is null)
            throw json.Unsupported("norm_num_groups", "null (no group norm) is not implemented");
        NormNumGroups = json.Get("norm_num_groups", 32);
        NormEps = json.Get("norm_eps", 1e-5);
        CrossAttentionDim = PerBlock(json, "cross_attention_dim", 1280, n);
        TransformerLayersPerBlock = PerBlock(json, "transformer_layers_per_block", 1, n);
        if (json.Has("num_attention_heads"))
            throw json.Unsupported("num_attention_heads", "diffusers itself refuses it because of a naming issue; SD configs give the head count as attention_head_dim");
        NumAttentionHeads = PerBlock(json, "attention_head_dim", 8, n);
        OnlyCrossAttention = json.Root["only_cross_attention"] is JsonArray
            ? json.Get<bool[]>("only_cross_attention", Array.Empty<bool>())
            : Enumerable.Repeat(json.Get("only_cross_attention", false), n).ToArray();
        if (OnlyCrossAttention.Length != n) throw json.Unsupported("only_cross_attention", "diffusers requires one entry per down block");
        UseLinearProjection = json.Get("use_linear_projection", false);
        UpcastAttention = json.Get("upcast_attention", false);
        TimeEmbedDim = json.Get<int?>("time_embedding_dim", null) ?? BlockOutChannels[0] * 4;
        ConvInKernel = json.Get("conv_in_kernel", 3);
        ConvOutKernel = json.Get("conv_out_kernel", 3);
        for (int i = 0; i < n; i++)
            if (BlockOutChannels[i] % NumAttentionHeads[i] != 0)
                throw json.Unsupported("attention_head_dim", $"block {i}: {BlockOutChannels[i]} channels are not divisible into {NumAttentionHeads[i]} heads");
    }

    public static UNet2DConditionConfig Load(string path) => new(ConfigJson.Load(path));
    public static UNet2DConditionConfig Parse(string json) => new(ConfigJson.Parse(json));

    /// <summary>An int broadcast to every block, or a per-block list (diffusers accepts both).</summary>
    static int[] PerBlock(ConfigJson json, string key, int defaultValue, int blocks)
    {
        int[]? values;
        try { values = json.GetIntOrList(key, blocks); }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        { throw json.Unsupported(key, "expected an int or a flat list of ints, one per down block"); }
        values ??= Enumerable.Repeat(defaultValue, blocks).ToArray();
        if (values.Length != blocks) throw json.Unsupported(key, $"diffusers requires one entry per down block ({blocks})");
        return values;
    }

    static void RefuseUnlessDefault(ConfigJson json)
    {
        void Null(string key, string why) { if (json.Has(key)) throw json.Unsupported(key, why); }
        void Is<T>(string key, T expected, string why) { if (json.Has(key) && !EqualityComparer<T>.Default.Equals(json.Get(key, expected), expected)) throw json.Unsupported(key, why); }

        Is("dual_cross_attention", false, "dual cross-attention (versatile diffusion) is not implemented");
        Null("class_embed_type", "class embeddings are not implemented");
        Null("num_class_embeds", "class embeddings are not implemented");
        Null("addition_embed_type", "additional embeddings (SDXL text_time etc.) are not implemented");
        Null("encoder_hid_dim", "encoder_hid_proj is not implemented");
        Null("encoder_hid_dim_type", "encoder_hid_proj is not implemented");
        Null("time_cond_proj_dim", "timestep conditioning projection is not implemented");
        Null("timestep_post_act", "a post-activation on the time embedding is not implemented");
        Null("time_embedding_act_fn", "a time embedding activation is not implemented");
        Null("reverse_transformer_layers_per_block", "per-layer transformer depths for up blocks are not implemented");
        Null("cross_attention_norm", "cross-attention norms are not implemented");
        Is("time_embedding_type", "positional", "only the sinusoidal 'positional' time embedding is implemented");
        Is("resnet_time_scale_shift", "default", "only 'default' (additive) time conditioning is implemented");
        Is("attention_type", "default", "only 'default' attention is implemented");
        Is("mid_block_type", "UNetMidBlock2DCrossAttn", "only UNetMidBlock2DCrossAttn is implemented");
        Is("class_embeddings_concat", false, "class embeddings are not implemented");
        if (json.Root.TryGetPropertyValue("mid_block_type", out var m) && m is null)
            throw json.Unsupported("mid_block_type", "a UNet without mid block is not implemented");
    }
}
