namespace DreamBooth.Engine.Pipelines;

/// <summary>What to generate. Mirrors StableDiffusionPipeline.__call__'s arguments.</summary>
public sealed record TextToImageOptions
{
    public required IReadOnlyList<string> Prompts { get; init; }
    /// <summary>One negative prompt for all, or one per prompt; null = "" (tokenized, as diffusers does).</summary>
    public IReadOnlyList<string>? NegativePrompts { get; init; }
    public int ImagesPerPrompt { get; init; } = 1;
    public int Steps { get; init; } = 50;
    public double GuidanceScale { get; init; } = 7.5;
    /// <summary>
    /// diffusers' guidance_rescale (Lin et al. 2023, §3.4): the guided prediction is rescaled towards the text
    /// prediction's standard deviation by this fraction, against over-exposure with zero-terminal-SNR models. 0: off.
    /// </summary>
    public double GuidanceRescale { get; init; }
    public int? Width { get; init; }
    public int? Height { get; init; }
    /// <summary>Image i (in prompt-major order) uses seed Seed + i, so each image is reproducible on its own.</summary>
    public long Seed { get; init; }
    /// <summary>Scheduler name or diffusers class name; null = the model's own.</summary>
    public string? Scheduler { get; init; }
    /// <summary>Images denoised together (memory vs speed).</summary>
    public int BatchSize { get; init; } = 1;
    /// <summary>0 = last hidden state; k = k layers skipped, final layer norm applied (diffusers' clip_skip).</summary>
    public int ClipSkip { get; init; }
    /// <summary>Optional initial latents [N,4,h,w] (before init_noise_sigma scaling), as diffusers' latents=.</summary>
    public TorchSharp.torch.Tensor? Latents { get; init; }
    /// <summary>
    /// Image-to-image (diffusers' StableDiffusionImg2ImgPipeline): the image file every output starts from, encoded by
    /// the VAE and noised to the level <see cref="Strength"/> picks (<see cref="InitImage"/>). Its size is the output's
    /// unless Width and Height are given. Null: text to image.
    /// </summary>
    public string? InitImage { get; init; }
    /// <summary>
    /// How far from the init image to go: 0 keeps it, 1 replaces it; int(Steps · Strength) steps are run. Null: diffusers'
    /// defaults, 0.8 for image to image and 1.0 for inpainting (<see cref="EffectiveStrength"/>).
    /// </summary>
    public double? Strength { get; init; }
    /// <summary>
    /// Inpainting (diffusers' StableDiffusionInpaintPipeline), with <see cref="InitImage"/>: white pixels of this mask
    /// (grey ≥ 0.5 after PIL's grey conversion) are painted anew, black ones keep the init image. A regular model's
    /// latents are blended back outside the mask after every step; an inpainting model (UNet of 9 input channels) gets
    /// the mask and the masked image's latents as input instead.
    /// </summary>
    public string? MaskImage { get; init; }
    public double EffectiveStrength => Strength ?? (MaskImage is null ? 0.8 : 1.0);

    public void Validate()
    {
        if (Prompts.Count == 0) throw new ArgumentException("At least one prompt is needed.");
        if (ImagesPerPrompt < 1) throw new ArgumentOutOfRangeException(nameof(ImagesPerPrompt), ImagesPerPrompt, "Images per prompt must be at least 1.");
        if (Steps < 1) throw new ArgumentOutOfRangeException(nameof(Steps), Steps, "Steps must be at least 1.");
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "Batch size must be at least 1.");
        if (Width is int w && (w <= 0 || w % 8 != 0)) throw new ArgumentOutOfRangeException(nameof(Width), w, "Width must be a positive multiple of 8.");
        if (Height is int h && (h <= 0 || h % 8 != 0)) throw new ArgumentOutOfRangeException(nameof(Height), h, "Height must be a positive multiple of 8.");
        if (NegativePrompts is { Count: > 1 } n && n.Count != Prompts.Count)
            throw new ArgumentException($"Give one negative prompt, or one per prompt ({Prompts.Count}); got {n.Count}.");
        if (ClipSkip < 0) throw new ArgumentOutOfRangeException(nameof(ClipSkip), ClipSkip, "Clip skip cannot be negative.");
        if (GuidanceRescale is < 0 or > 1 || double.IsNaN(GuidanceRescale)) throw new ArgumentOutOfRangeException(nameof(GuidanceRescale), GuidanceRescale, "Guidance rescale must be between 0 and 1.");
        if (MaskImage is not null && InitImage is null) throw new ArgumentException("A mask needs the init image it applies to.");
        if (InitImage is not null)
        {
            double s = EffectiveStrength;
            if (s is < 0 or > 1 || double.IsNaN(s)) throw new ArgumentOutOfRangeException(nameof(Strength), s, "Strength must be between 0 and 1.");
            if (Pipelines.InitImage.SkippedSteps(Steps, s) >= Steps)
                throw new ArgumentException($"Strength {s} of {Steps} steps leaves no step to run (int({Steps} × {s}) = 0): raise the strength or the steps.");
            if (Latents is not null) throw new ArgumentException("Give initial latents or an init image, not both.");
        }
    }
}

/// <summary>Progress of a generation: one report per denoising step.</summary>
public sealed record DenoiseProgress(int Image, int ImageCount, int Step, int StepCount, TimeSpan Elapsed);

/// <summary>One generated image: [3,H,W] float in [0,1] on the CPU, with what made it.</summary>
public sealed record GeneratedImage(
    TorchSharp.torch.Tensor Pixels, string Prompt, string NegativePrompt, long Seed, int Steps, double GuidanceScale,
    string Scheduler, int Width, int Height, TimeSpan Duration, int Index)
{
    /// <summary>diffusers' guidance_rescale the image was made with (0: none).</summary>
    public double GuidanceRescale { get; init; }
    /// <summary>Image-to-image and inpainting: the init image's full path, the strength, and the mask's full path; null for text to image.</summary>
    public string? InitImage { get; init; }
    public double? Strength { get; init; }
    public string? MaskImage { get; init; }
}
