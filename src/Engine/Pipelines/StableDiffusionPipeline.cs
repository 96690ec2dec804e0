using System.Diagnostics;
using DreamBooth.Engine.IO;
using DreamBooth.Engine.Models.Autoencoders;
using DreamBooth.Engine.Models.TextEncoders;
using DreamBooth.Engine.Models.Unets;
using DreamBooth.Engine.Schedulers;
using DreamBooth.Engine.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Pipelines;

/// <summary>
/// diffusers' StableDiffusionPipeline: tokenizer, CLIP text encoder, UNet, VAE and a scheduler configuration.
/// Text-to-image follows __call__ step for step (classifier-free guidance with the negative embeddings first,
/// latents × init_noise_sigma, decode of latents / scaling_factor); with an init image StableDiffusionImg2ImgPipeline's,
/// and with a mask too StableDiffusionInpaintPipeline's (<see cref="ImageConditioning"/>).
/// </summary>
public sealed class StableDiffusionPipeline : IDisposable
{
    public ClipTokenizer Tokenizer { get; }
    public ClipTextModel TextEncoder { get; private set; }
    public UNet2DConditionModel Unet { get; private set; }
    public AutoencoderKL Vae { get; }
    public ConfigJson SchedulerConfig { get; }
    public string SchedulerClassName { get; }
    public Device Device { get; }
    public ScalarType DType { get; }
    /// <summary>Where the weights came from (for output objects and PNG metadata).</summary>
    public string SourcePath { get; set; } = "";

    public StableDiffusionPipeline(ClipTokenizer tokenizer, ClipTextModel textEncoder, UNet2DConditionModel unet,
        AutoencoderKL vae, ConfigJson schedulerConfig, Device device, ScalarType dtype)
    {
        Tokenizer = tokenizer; TextEncoder = textEncoder; Unet = unet; Vae = vae;
        SchedulerConfig = schedulerConfig;
        SchedulerClassName = schedulerConfig.Get<string?>("_class_name", null) ?? "PNDMScheduler";
        Device = device; DType = dtype;
    }

    /// <summary>2^(number of VAE blocks − 1), as diffusers computes vae_scale_factor.</summary>
    public int VaeScaleFactor => 1 << (Vae.Config.BlockOutChannels.Length - 1);
    /// <summary>unet sample_size × vae_scale_factor, as diffusers picks the default height and width (512 for SD 1.x).</summary>
    public int DefaultSize => (Unet.Config.SampleSize ?? 64) * VaeScaleFactor;

    /// <summary>Loads a diffusers pipeline folder (model_index.json, tokenizer/, text_encoder/, unet/, vae/, scheduler/).</summary>
    public static StableDiffusionPipeline FromPretrained(string folder, ScalarType dtype, Device device,
        string? unetOverride = null, string? textEncoderOverride = null)
    {
        var layout = DiffusersPipelineFolder.Open(folder);
        var tokenizer = ClipTokenizer.FromPretrained(layout.ComponentDirectory("tokenizer"));
        var textEncoder = ClipTextModel.FromPretrained(textEncoderOverride ?? layout.ComponentDirectory("text_encoder"), dtype, device);
        var unet = UNet2DConditionModel.FromPretrained(unetOverride ?? layout.ComponentDirectory("unet"), dtype, device);
        var vae = AutoencoderKL.FromPretrained(layout.ComponentDirectory("vae"), dtype, device);
        var scheduler = Schedulers.SchedulerConfig.LoadJson(Path.Combine(layout.ComponentDirectory("scheduler"), "scheduler_config.json"));
        return new StableDiffusionPipeline(tokenizer, textEncoder, unet, vae, scheduler, device, dtype) { SourcePath = layout.Root };
    }

    /// <summary>Prompt embeddings as encode_prompt makes them: padded to model_max_length, no attention mask.</summary>
    public Tensor EncodePrompts(IReadOnlyList<string> prompts, int clipSkip = 0)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var ids = Tokenizer.EncodeBatch(prompts).ToTensor().to(Device);
        var embeds = TextEncoder.EncodeForDiffusion(ids, clipSkip).to(DType);
        return embeds.MoveToOuterDisposeScope();
    }

    public SchedulerBase CreateScheduler(string? name)
        => name is null ? SchedulerFactory.Create(SchedulerClassName, SchedulerConfig) : SchedulerFactory.Create(name, SchedulerConfig);

    /// <summary>Generates images. Each image i uses its own CPU generator seeded Seed + i for its initial latents.</summary>
    public IReadOnlyList<GeneratedImage> Generate(TextToImageOptions options, IProgress<DenoiseProgress>? progress = null,
        CancellationToken cancellation = default, Action<GeneratedImage>? onImage = null)
    {
        options.Validate();
        bool inpaintingModel = ImageConditioning.IsInpaintingModel(this);
        if (inpaintingModel && options.MaskImage is null)
            throw new ArgumentException($"This model is an inpainting model (its UNet takes {Unet.Config.InChannels} input channels): give it an init image and a mask to paint in.");
        if (!inpaintingModel && Unet.Config.InChannels != Vae.Config.LatentChannels)
            throw new ArgumentException($"The UNet takes {Unet.Config.InChannels} input channels, the VAE's latents have {Vae.Config.LatentChannels}: this pipeline cannot generate.");
        var (width, height) = options.InitImage is null ? (options.Width ?? DefaultSize, options.Height ?? DefaultSize)
            : InitImage.SizeOf(options.InitImage, options.Width, options.Height, VaeScaleFactor);
        if (height % VaeScaleFactor != 0 || width % VaeScaleFactor != 0)
            throw new ArgumentException($"Width and height must be multiples of {VaeScaleFactor} for this model.");
        var jobs = new List<(string Prompt, string Negative, long Seed, int Index)>();
        int index = 0;
        for (int p = 0; p < options.Prompts.Count; p++)
        {
            string neg = options.NegativePrompts switch { null or { Count: 0 } => "", { Count: 1 } n => n[0], var n => n[p] };
            for (int k = 0; k < options.ImagesPerPrompt; k++, index++)
                jobs.Add((options.Prompts[p], neg, options.Seed + index, index));
        }
        if (options.Latents is not null && options.Latents.shape[0] != jobs.Count)
            throw new ArgumentException($"Given latents have batch {options.Latents.shape[0]} but {jobs.Count} images are asked for.");
        // On the CPU a generation too large for memory would end the process (OOM killer), not fail: refuse it first.
        GenerationMemory.EnsureFits(Vae.Config, Device, DType, width, height, Math.Min(options.BatchSize, jobs.Count), HostMemory.AvailableBytes());
        // From a picture: it is encoded once; each output samples its latents from that with its own generator.
        using var fromImage = options.InitImage is null ? null : ImageConditioning.Load(this, options);

        var results = new List<GeneratedImage>();
        using var scheduler = CreateScheduler(options.Scheduler);
        for (int start = 0; start < jobs.Count; start += options.BatchSize)
        {
            cancellation.ThrowIfCancellationRequested();
            var batch = jobs.Skip(start).Take(options.BatchSize).ToList();
            var sw = Stopwatch.StartNew();
            using var scope = torch.NewDisposeScope();
            Tensor? given = options.Latents?.narrow(0, start, batch.Count);
            var images = GenerateBatch(batch.Select(b => b.Prompt).ToList(), batch.Select(b => b.Negative).ToList(),
                batch.Select(b => b.Seed).ToList(), given, fromImage, options, scheduler, height, width,
                (step, steps) => progress?.Report(new DenoiseProgress(start, jobs.Count, step, steps, sw.Elapsed)), cancellation);
            for (int i = 0; i < batch.Count; i++)
            {
                var pixels = images[i].cpu().to(ScalarType.Float32).MoveToOuterDisposeScope();
                var img = new GeneratedImage(pixels, batch[i].Prompt, batch[i].Negative, batch[i].Seed, options.Steps,
                    options.GuidanceScale, scheduler.ClassName, width, height, sw.Elapsed / batch.Count, batch[i].Index)
                {
                    InitImage = options.InitImage is null ? null : Path.GetFullPath(options.InitImage),
                    Strength = options.InitImage is null ? null : options.EffectiveStrength,
                    MaskImage = options.MaskImage is null ? null : Path.GetFullPath(options.MaskImage),
                    GuidanceRescale = options.GuidanceRescale,
                };
                results.Add(img);
                onImage?.Invoke(img);
            }
        }
        return results;
    }

    Tensor GenerateBatch(List<string> prompts, List<string> negatives, List<long> seeds, Tensor? givenLatents, ImageConditioning? fromImage,
        TextToImageOptions options, SchedulerBase scheduler, int height, int width, Action<int, int> onStep, CancellationToken cancellation)
    {
        using var _ = torch.no_grad();
        bool guidance = options.GuidanceScale > 1.0;
        var promptEmbeds = EncodePrompts(prompts, options.ClipSkip);
        var context = guidance ? torch.cat(new[] { EncodePrompts(negatives, options.ClipSkip), promptEmbeds }, 0) : promptEmbeds;

        scheduler.SetTimesteps(options.Steps);
        long[] shape = { 1, Unet.Config.InChannels, height / VaeScaleFactor, width / VaeScaleFactor };
        var timesteps = scheduler.Timesteps;
        Tensor latents;
        ImageStart? start = null;
        if (fromImage is not null)
        {
            start = fromImage.Begin(scheduler, options, seeds);
            timesteps = start.Timesteps;
            latents = start.Latents.to(DType);
        }
        else
        {
            if (givenLatents is not null) latents = givenLatents.to(ScalarType.Float32).to(Device);
            else
            {
                // diffusers' randn_tensor with a CPU generator: draw on the CPU, then move.
                var parts = seeds.Select(s => { using var g = new torch.Generator((ulong)s); return torch.randn(shape, dtype: ScalarType.Float32, generator: g); }).ToArray();
                latents = torch.cat(parts, 0).to(Device);
            }
            latents = (latents * scheduler.InitNoiseSigma).to(DType);
        }
        using var stepGenerator = new torch.Generator((ulong)seeds[0]);

        int steps = (int)timesteps.shape[0];
        for (int i = 0; i < steps; i++)
        {
            cancellation.ThrowIfCancellationRequested();
            using var stepScope = torch.NewDisposeScope();
            var t = timesteps[i];
            var modelInput = guidance ? torch.cat(new[] { latents, latents }, 0) : latents;
            modelInput = scheduler.ScaleModelInput(modelInput, t);
            if (start is not null) modelInput = start.UnetInput(modelInput);
            var noise = Unet.forward(modelInput.to(DType), t.to(Device), context);
            if (guidance)
            {
                var chunks = noise.chunk(2, 0);
                noise = chunks[0] + options.GuidanceScale * (chunks[1] - chunks[0]);
                if (options.GuidanceRescale > 0) noise = RescaleNoiseCfg(noise, chunks[1], options.GuidanceRescale);
            }
            latents = scheduler.Step(noise, t, latents, stepGenerator);
            if (start is not null) latents = start.AfterStep(latents, i, scheduler);
            latents = latents.MoveToOuterDisposeScope();
            onStep(i + 1, steps);
        }
        var decoded = Vae.Decode(latents / Vae.ScalingFactor);
        return (decoded.to(ScalarType.Float32) / 2 + 0.5).clamp(0, 1);
    }

    /// <summary>
    /// diffusers' rescale_noise_cfg: the guided prediction scaled to the text prediction's standard deviation (per
    /// image), mixed with the unscaled one by <paramref name="rescale"/>.
    /// </summary>
    static Tensor RescaleNoiseCfg(Tensor guided, Tensor text, double rescale)
    {
        var dims = Enumerable.Range(1, (int)guided.dim() - 1).Select(d => (long)d).ToArray();
        var rescaled = guided * (text.std(dims, keepdim: true) / guided.std(dims, keepdim: true));
        return rescale * rescaled + (1 - rescale) * guided;
    }

    /// <summary>Test hook: the timesteps and noised latents a generation from a picture starts its first image from.</summary>
    internal (Tensor Timesteps, Tensor Latents) ImageToImageStart(TextToImageOptions options)
    {
        options.Validate();
        using var fromImage = ImageConditioning.Load(this, options);
        using var scheduler = CreateScheduler(options.Scheduler);
        scheduler.SetTimesteps(options.Steps);
        var start = fromImage.Begin(scheduler, options, new List<long> { options.Seed });
        return (start.Timesteps, start.Latents);
    }

    /// <summary>Replaces the UNet (e.g. with a trained one); the old one is disposed.</summary>
    public void ReplaceUnet(UNet2DConditionModel unet) { if (!ReferenceEquals(Unet, unet)) Unet.Dispose(); Unet = unet; }
    public void ReplaceTextEncoder(ClipTextModel te) { if (!ReferenceEquals(TextEncoder, te)) TextEncoder.Dispose(); TextEncoder = te; }

    public void Dispose()
    {
        TextEncoder.Dispose();
        Unet.Dispose();
        Vae.Dispose();
    }
}
