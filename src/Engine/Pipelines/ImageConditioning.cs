using DreamBooth.Engine.Models.Autoencoders;
using DreamBooth.Engine.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Pipelines;

/// <summary>
/// The picture a generation starts from: diffusers' StableDiffusionImg2ImgPipeline (an init image) and
/// StableDiffusionInpaintPipeline (an init image and a mask). The init image is encoded once; each batch then gets its
/// noised start (<see cref="Begin"/>), sampled with a generator per image (seed + i) in diffusers' order: the image's
/// latents, the noise, then the masked image's latents (inpainting models only).
/// </summary>
internal sealed class ImageConditioning : IDisposable
{
    readonly StableDiffusionPipeline _pipe;
    readonly DiagonalGaussianDistribution _image;
    readonly Tensor? _mask;                                 // [1, 1, H, W]: 1 paints anew, 0 keeps the init image
    readonly DiagonalGaussianDistribution? _maskedImage;    // inpainting models: the init image with the mask's area grey
    public int Width { get; }
    public int Height { get; }

    ImageConditioning(StableDiffusionPipeline pipe, DiagonalGaussianDistribution image, Tensor? mask, DiagonalGaussianDistribution? maskedImage, int width, int height)
    {
        _pipe = pipe; _image = image; _mask = mask; _maskedImage = maskedImage; Width = width; Height = height;
    }

    /// <summary>Loads and encodes the options' init image (and mask), at the output size.</summary>
    public static ImageConditioning Load(StableDiffusionPipeline pipe, TextToImageOptions options)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var image = InitImage.Load(options.InitImage!, options.Width, options.Height, pipe.VaeScaleFactor);
        int height = (int)image.shape[2], width = (int)image.shape[3];
        var mask = options.MaskImage is null ? null : InitImage.LoadMask(options.MaskImage, width, height);
        var dist = pipe.Vae.Encode(image.to(pipe.Device).to(pipe.DType)).DetachFromDisposeScope();
        DiagonalGaussianDistribution? masked = null;
        if (mask is not null && IsInpaintingModel(pipe))
            masked = pipe.Vae.Encode((image * (mask < 0.5)).to(pipe.Device).to(pipe.DType)).DetachFromDisposeScope();
        mask?.DetachFromDisposeScope();
        return new ImageConditioning(pipe, dist, mask, masked, width, height);
    }

    /// <summary>A UNet that takes the mask and the masked image's latents beside the latents (runwayml's inpainting models: 9 channels).</summary>
    public static bool IsInpaintingModel(StableDiffusionPipeline pipe) => pipe.Unet.Config.InChannels == 2 * pipe.Vae.Config.LatentChannels + 1;

    /// <summary>
    /// get_timesteps and prepare_latents (+ prepare_mask_latents) for one batch, after SetTimesteps: the last
    /// int(steps · strength) timesteps, the scheduler's index started at the first of them, and the latents to start from:
    /// the image's noised to the first of them, or, when inpainting at strength 1, pure noise × init_noise_sigma.
    /// </summary>
    public ImageStart Begin(SchedulerBase scheduler, TextToImageOptions options, IReadOnlyList<long> seeds)
    {
        using var scope = torch.NewDisposeScope();
        double strength = options.EffectiveStrength;
        int begin = InitImage.SkippedSteps(options.Steps, strength) * scheduler.Order;
        var timesteps = scheduler.Timesteps[TensorIndex.Slice(begin)];
        scheduler.SetBeginIndex(begin);
        bool pureNoise = _mask is not null && strength == 1.0;
        bool inpaintingModel = _maskedImage is not null;
        float scaling = (float)_pipe.Vae.ScalingFactor;
        var images = new List<Tensor>();
        var noises = new List<Tensor>();
        var maskedImages = new List<Tensor>();
        foreach (var seed in seeds)
        {
            using var g = new torch.Generator((ulong)seed);
            // diffusers skips encoding the image only where nothing needs it: an inpainting model starting from pure noise.
            if (!(pureNoise && inpaintingModel)) images.Add(_image.Sample(g).to(ScalarType.Float32) * scaling);
            noises.Add(torch.randn(_image.Mean.shape, dtype: ScalarType.Float32, generator: g).to(_pipe.Device));
            if (_maskedImage is not null) maskedImages.Add(_maskedImage.Sample(g).to(ScalarType.Float32) * scaling);
        }
        var noise = torch.cat(noises.ToArray(), 0);
        var imageLatents = images.Count > 0 ? torch.cat(images.ToArray(), 0) : null;
        var latents = pureNoise ? noise * scheduler.InitNoiseSigma
            : scheduler.AddNoise(imageLatents!, noise, timesteps[TensorIndex.Slice(0, 1)].repeat(seeds.Count));
        Tensor? maskLatents = null;
        if (_mask is not null)
        {
            var size = new long[] { Height / _pipe.VaeScaleFactor, Width / _pipe.VaeScaleFactor };
            maskLatents = nn.functional.interpolate(_mask, size: size, mode: InterpolationMode.Nearest).to(_pipe.Device).repeat(seeds.Count, 1, 1, 1);
        }
        var start = new ImageStart(timesteps.clone(), latents, noise, imageLatents, maskLatents,
            maskedImages.Count > 0 ? torch.cat(maskedImages.ToArray(), 0) : null);
        start.MoveToOuterDisposeScope();
        return start;
    }

    public void Dispose()
    {
        _image.Dispose();
        _mask?.Dispose();
        _maskedImage?.Dispose();
    }
}

/// <summary>
/// One batch's start from a picture, and what inpainting does at each step: an inpainting model gets the mask and the
/// masked image's latents as extra input channels; a regular model's latents are put back outside the mask after each
/// step, as the init image's latents noised to the next timestep.
/// </summary>
internal sealed record ImageStart(Tensor Timesteps, Tensor Latents, Tensor Noise, Tensor? ImageLatents, Tensor? MaskLatents, Tensor? MaskedImageLatents)
{
    /// <summary>The UNet's input after scale_model_input: [latents, mask, masked image latents] for an inpainting model.</summary>
    public Tensor UnetInput(Tensor scaledInput)
    {
        if (MaskedImageLatents is null) return scaledInput;
        int copies = (int)(scaledInput.shape[0] / MaskLatents!.shape[0]);   // 2 with classifier-free guidance
        var mask = torch.cat(Enumerable.Repeat(MaskLatents, copies).ToArray(), 0);
        var masked = torch.cat(Enumerable.Repeat(MaskedImageLatents, copies).ToArray(), 0);
        return torch.cat(new[] { scaledInput, mask.to(scaledInput.dtype), masked.to(scaledInput.dtype) }, 1);
    }

    /// <summary>A regular model inpainting: after step <paramref name="i"/>, keep the new latents inside the mask only.</summary>
    public Tensor AfterStep(Tensor latents, int i, SchedulerBase scheduler)
    {
        if (MaskLatents is null || MaskedImageLatents is not null) return latents;
        var proper = ImageLatents!;
        if (i < Timesteps.shape[0] - 1)
            proper = scheduler.AddNoise(proper, Noise, Timesteps[TensorIndex.Slice(i + 1, i + 2)]);
        var mask = MaskLatents.to(latents.dtype);
        return (1 - mask) * proper.to(latents.dtype) + mask * latents;
    }

    public void MoveToOuterDisposeScope()
    {
        foreach (var t in new[] { Timesteps, Latents, Noise, ImageLatents, MaskLatents, MaskedImageLatents }) t?.MoveToOuterDisposeScope();
    }
}
