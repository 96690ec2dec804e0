using DreamBooth.Engine.IO;

namespace DreamBooth.Engine.Models.Autoencoders;

/// <summary>The <c>vae/config.json</c> of an AutoencoderKL; unknown keys are kept in <see cref="Json"/> for saving.</summary>
public sealed class AutoencoderKLConfig
{
    public ConfigJson Json { get; }
    public int InChannels { get; }
    public int OutChannels { get; }
    public int[] BlockOutChannels { get; }
    public int LayersPerBlock { get; }
    public string ActFn { get; }
    public int LatentChannels { get; }
    public int NormNumGroups { get; }
    public int SampleSize { get; }
    public double ScalingFactor { get; }
    public double? ShiftFactor { get; }
    public bool ForceUpcast { get; }
    public bool UseQuantConv { get; }
    public bool UsePostQuantConv { get; }
    public bool MidBlockAddAttention { get; }

    public AutoencoderKLConfig(ConfigJson json)
    {
        Json = json;
        InChannels = json.Get("in_channels", 3);
        OutChannels = json.Get("out_channels", 3);
        BlockOutChannels = json.Get("block_out_channels", new[] { 64 });
        var down = json.Get("down_block_types", new[] { "DownEncoderBlock2D" });
        var up = json.Get("up_block_types", new[] { "UpDecoderBlock2D" });
        if (down.Any(t => t != "DownEncoderBlock2D")) throw json.Unsupported("down_block_types", "only DownEncoderBlock2D is implemented");
        if (up.Any(t => t != "UpDecoderBlock2D")) throw json.Unsupported("up_block_types", "only UpDecoderBlock2D is implemented");
        if (down.Length != BlockOutChannels.Length) throw json.Unsupported("down_block_types", "one block per block_out_channels entry is required");
        if (up.Length != BlockOutChannels.Length) throw json.Unsupported("up_block_types", "one block per block_out_channels entry is required");
        LayersPerBlock = json.Get("layers_per_block", 1);
        ActFn = json.Get("act_fn", "silu");
        if (!Activations.IsKnown(ActFn)) throw json.Unsupported("act_fn", "unknown activation");
        LatentChannels = json.Get("latent_channels", 4);
        NormNumGroups = json.Get("norm_num_groups", 32);
        SampleSize = json.Get("sample_size", 32);
        ScalingFactor = json.Get("scaling_factor", 0.18215);
        ShiftFactor = json.Get<double?>("shift_factor", null);
        ForceUpcast = json.Get("force_upcast", true);
        UseQuantConv = json.Get("use_quant_conv", true);
        UsePostQuantConv = json.Get("use_post_quant_conv", true);
        MidBlockAddAttention = json.Get("mid_block_add_attention", true);
        if (json.Has("latents_mean") || json.Has("latents_std"))
            throw json.Unsupported(json.Has("latents_mean") ? "latents_mean" : "latents_std", "per-channel latent statistics (SDXL/SD3-style) are not implemented");
    }

    public static AutoencoderKLConfig Load(string path) => new(ConfigJson.Load(path));
    public static AutoencoderKLConfig Parse(string json) => new(ConfigJson.Parse(json));
}
