using DreamBooth.Engine.IO;
using DreamBooth.Engine.Models.Autoencoders;
using DreamBooth.Engine.Models.TextEncoders;
using DreamBooth.Engine.Models.Unets;
using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Pipelines;

/// <summary>
/// What a model is, read from its configs and safetensors headers without loading a weight: the kind of folder, the
/// Stable Diffusion family, the size it generates at by default, its prediction type, whether it is an inpainting model,
/// the precision its UNet is stored in, parameter counts and size on disk (Get-DreamBoothModel).
/// </summary>
public sealed record ModelDescription
{
    public required string Path { get; init; }
    /// <summary>pipeline, training output (a pipeline folder with checkpoints), checkpoint, or LoRA.</summary>
    public required string Kind { get; init; }
    /// <summary>The pipeline the weights apply to, for a checkpoint or LoRA; the path itself otherwise.</summary>
    public required string BaseModel { get; init; }
    /// <summary>SD 1.x (CLIP ViT-L, 768-wide cross-attention), SD 2.x (OpenCLIP ViT-H, 1024), or the width otherwise.</summary>
    public required string Family { get; init; }
    /// <summary>The default image side: the UNet's sample_size × the VAE's scale factor (512 for SD 1.x, 768 for SD 2.x 768-v).</summary>
    public int Resolution { get; init; }
    public required string PredictionType { get; init; }
    public bool Inpainting { get; init; }
    /// <summary>The UNet weights' stored precision (fp32, fp16, bf16).</summary>
    public required string Precision { get; init; }
    public required string Scheduler { get; init; }
    public int TextEncoderLayers { get; init; }
    public long UnetParameters { get; init; }
    public long TextEncoderParameters { get; init; }
    public long VaeParameters { get; init; }
    /// <summary>Bytes of all files below <see cref="Path"/> (a checkpoint's optimizer state included).</summary>
    public long SizeOnDisk { get; init; }

    public static ModelDescription Describe(ModelSource source)
    {
        var folder = DiffusersPipelineFolder.Open(source.BaseModel);
        string unetDir = source.UnetDirectory ?? folder.ComponentDirectory("unet");
        string textEncoderDir = source.TextEncoderDirectory ?? folder.ComponentDirectory("text_encoder");
        var unet = UNet2DConditionConfig.Load(System.IO.Path.Combine(unetDir, "config.json"));
        var vae = AutoencoderKLConfig.Load(folder.ConfigPath("vae"));
        var textEncoder = ClipTextConfig.Load(System.IO.Path.Combine(textEncoderDir, "config.json"));
        var scheduler = folder.LoadConfig("scheduler");
        var counts = PipelineMemory.Count(source);
        int crossAttention = unet.CrossAttentionDim[0];
        string kind = source.IsLoRA ? "LoRA" : source.IsCheckpoint ? "checkpoint"
            : CheckpointStore.List(source.Path).Count > 0 ? "training output" : "pipeline";
        string precision;
        using (var weights = DiffusersPipelineFolder.OpenWeights(unetDir))
            precision = weights.Keys.Select(k => weights[k].DType).GroupBy(d => d).OrderByDescending(g => g.Count()).First().Key switch
            {
                "F32" => "fp32", "F16" => "fp16", "BF16" => "bf16", var other => other,
            };
        return new ModelDescription
        {
            Path = source.Path, Kind = kind, BaseModel = source.BaseModel,
            Family = crossAttention switch { 768 => "SD 1.x", 1024 => "SD 2.x", var d => $"cross-attention {d}" },
            Resolution = (unet.SampleSize ?? 64) * (1 << (vae.BlockOutChannels.Length - 1)),
            PredictionType = scheduler.Get("prediction_type", "epsilon"),
            Inpainting = unet.InChannels == 2 * vae.LatentChannels + 1,
            Precision = precision,
            Scheduler = scheduler.Get<string?>("_class_name", null) ?? "PNDMScheduler",
            TextEncoderLayers = textEncoder.NumHiddenLayers,
            UnetParameters = counts.Unet, TextEncoderParameters = counts.TextEncoder, VaeParameters = counts.Vae,
            SizeOnDisk = Directory.Exists(source.Path)
                ? new DirectoryInfo(source.Path).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length)
                : File.Exists(source.Path) ? new FileInfo(source.Path).Length : 0,
        };
    }
}
