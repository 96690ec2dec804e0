using DreamBooth.Engine.IO;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.Autoencoders;

/// <summary>
/// diffusers <c>AutoencoderKL</c> (models/autoencoders/autoencoder_kl.py): image → DiagonalGaussianDistribution of
/// latents, latents → image. The scaling factor is NOT applied here (callers multiply after encode, divide before decode).
/// </summary>
public sealed class AutoencoderKL : nn.Module<Tensor, Tensor>
{
    public const string WeightsName = "diffusion_pytorch_model.safetensors";
    public const string ConfigName = "config.json";

    readonly Encoder encoder;
    readonly Decoder decoder;
    readonly Conv2d? quant_conv;
    readonly Conv2d? post_quant_conv;

    public AutoencoderKLConfig Config { get; }
    public double ScalingFactor => Config.ScalingFactor;

    public AutoencoderKL(AutoencoderKLConfig config) : base(nameof(AutoencoderKL))
    {
        Config = config;
        var c = config;
        encoder = new Encoder(c.InChannels, c.LatentChannels, c.BlockOutChannels, c.LayersPerBlock, c.NormNumGroups, c.ActFn,
            doubleZ: true, c.MidBlockAddAttention);
        decoder = new Decoder(c.LatentChannels, c.OutChannels, c.BlockOutChannels, c.LayersPerBlock, c.NormNumGroups, c.ActFn,
            c.MidBlockAddAttention);
        if (c.UseQuantConv) quant_conv = Layers.Conv2d(2 * c.LatentChannels, 2 * c.LatentChannels, 1);
        if (c.UsePostQuantConv) post_quant_conv = Layers.Conv2d(c.LatentChannels, c.LatentChannels, 1);
        RegisterComponents();
    }

    public static AutoencoderKL FromConfig(AutoencoderKLConfig config, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        var model = new AutoencoderKL(config);
        if (dtype != ScalarType.Float32 || device is not null) model.to(device ?? torch.CPU, dtype);
        model.eval();
        return model;
    }

    /// <summary>Loads a diffusers <c>vae/</c> folder (config.json + diffusion_pytorch_model.safetensors); strict names and shapes.</summary>
    public static AutoencoderKL FromPretrained(string componentDir, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        var config = AutoencoderKLConfig.Load(Path.Combine(componentDir, ConfigName));
        using var weights = DiffusersPipelineFolder.OpenWeights(componentDir);   // one file or its shards
        return EmptyWeights.Load(() => new AutoencoderKL(config), weights, dtype, device);
    }

    public void SavePretrained(string componentDir)
    {
        Directory.CreateDirectory(componentDir);
        Config.Json.Save(Path.Combine(componentDir, ConfigName));
        StateDictLoader.Save(this, Path.Combine(componentDir, WeightsName));
    }

    /// <summary>Image in [−1, 1], [B, 3, H, W] → latent distribution [B, latent, H/f, W/f].</summary>
    public DiagonalGaussianDistribution Encode(Tensor image)
    {
        Tensor moments;
        using (var scope = torch.NewDisposeScope())
        {
            var h = encoder.forward(ChannelsLast.Applies(image) ? ChannelsLast.Convert(image) : image);
            if (quant_conv is not null) h = MixedPrecision.Forward(quant_conv, h);
            moments = h.contiguous().MoveToOuterDisposeScope();
        }
        using (moments) return new DiagonalGaussianDistribution(moments);
    }

    /// <summary>Latents (unscaled) → image in about [−1, 1].</summary>
    public Tensor Decode(Tensor z)
    {
        using var scope = torch.NewDisposeScope();
        var x = post_quant_conv is null ? z : MixedPrecision.Forward(post_quant_conv, z);
        if (ChannelsLast.Applies(x)) x = ChannelsLast.Convert(x);
        return decoder.forward(x).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>Reconstruction through the distribution's mode (diffusers' forward with sample_posterior = false).</summary>
    public override Tensor forward(Tensor image)
    {
        using var dist = Encode(image);
        return Decode(dist.Mean);
    }
}
