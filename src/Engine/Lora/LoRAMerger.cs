using DreamBooth.Engine.IO;
using DreamBooth.Engine.Models.TextEncoders;
using DreamBooth.Engine.Models.Unets;
using DreamBooth.Engine.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Lora;

/// <summary>
/// Bakes LoRA adapters into a base model and writes a complete diffusers pipeline folder (what
/// <c>pipe.fuse_lora(); pipe.save_pretrained()</c> gives): UNet and text encoder merged in fp32, VAE, tokenizer,
/// scheduler and model_index.json copied from the base.
/// </summary>
public static class LoRAMerger
{
    /// <summary>Returns the full output path. <paramref name="model"/> is a diffusers folder, output or checkpoint.</summary>
    public static string MergeToFolder(string model, IReadOnlyList<LoRAReference> loras, string outputDirectory, bool overwrite = false)
    {
        if (loras.Count == 0) throw new ArgumentException("Give at least one LoRA file to merge.", nameof(loras));
        var source = ModelSource.Resolve(model);
        var layout = DiffusersPipelineFolder.Open(source.BaseModel);
        var output = Path.GetFullPath(outputDirectory);
        if (Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any() && !overwrite)
            throw new IOException($"Output folder '{output}' is not empty. Choose an empty folder (or allow overwriting).");
        Directory.CreateDirectory(output);
        var staging = Path.Combine(output, ".merge-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(staging);
        try
        {
            using (var unet = UNet2DConditionModel.FromPretrained(source.UnetDirectory ?? layout.ComponentDirectory("unet"), ScalarType.Float32, torch.CPU))
            using (var te = ClipTextModel.FromPretrained(source.TextEncoderDirectory ?? layout.ComponentDirectory("text_encoder"), ScalarType.Float32, torch.CPU))
            {
                // A LoRA run's own adapters (its output or checkpoint) come first, then the ones given.
                var all = source.LoRAWeights.Select(p => new LoRAReference(p)).Concat(loras).ToList();
                using (var set = LoRAAdapterSet.Apply(unet, te, all)) set.Merge();
                unet.SavePretrained(Path.Combine(staging, "unet"));
                te.SavePretrained(Path.Combine(staging, "text_encoder"));
            }
            foreach (var component in new[] { "vae", "tokenizer", "scheduler" })
                FolderStaging.CopyDirectory(layout.ComponentDirectory(component), Path.Combine(staging, component));
            File.Copy(Path.Combine(layout.Root, "model_index.json"), Path.Combine(staging, "model_index.json"));
            FolderStaging.PublishInto(staging, output);
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, true);
        }
        return output;
    }

}
