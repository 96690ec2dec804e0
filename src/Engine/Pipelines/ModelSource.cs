using System.Text.Json.Nodes;

namespace DreamBooth.Engine.Pipelines;

/// <summary>
/// What a user's -Model path is: a diffusers pipeline folder (also what training writes at the end), or a
/// training checkpoint (checkpoint-N/), which holds only the trained components and records its base model.
/// </summary>
public sealed record ModelSource(string Path, string BaseModel, string? UnetDirectory, string? TextEncoderDirectory, bool IsCheckpoint)
{
    // LoRA (issue 8): a LoRA run's output or checkpoint holds only adapters, applied onto BaseModel when loaded.
    /// <summary>LoRA files (pytorch_lora_weights.safetensors) to apply onto the base model; empty for full models.</summary>
    public IReadOnlyList<string> LoRAWeights { get; init; } = Array.Empty<string>();
    public bool IsLoRA => LoRAWeights.Count > 0;

    /// <summary>The file in every checkpoint that records the run (base model, step, settings).</summary>
    public const string CheckpointManifest = "dreambooth_checkpoint.json";

    public static ModelSource Resolve(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        if (File.Exists(full))
            throw new ArgumentException($"'{full}' is a file. -Model takes a diffusers model folder (with model_index.json), a training output folder, or a checkpoint-N folder.");
        if (!Directory.Exists(full))
            throw new DirectoryNotFoundException($"Model folder '{full}' does not exist. Give a diffusers model folder (with model_index.json), a training output folder, or a checkpoint-N folder.");
        var manifest = System.IO.Path.Combine(full, CheckpointManifest);
        if (File.Exists(manifest) && !File.Exists(System.IO.Path.Combine(full, "model_index.json")))
        {
            var json = JsonNode.Parse(File.ReadAllText(manifest)) as JsonObject
                ?? throw new InvalidDataException($"'{manifest}' is not a JSON object.");
            var baseModel = json["base_model"]?.GetValue<string>()
                ?? throw new InvalidDataException($"'{manifest}' does not record its base model ('base_model').");
            if (!Directory.Exists(baseModel))
                throw new DirectoryNotFoundException($"Checkpoint '{full}' was trained from '{baseModel}', which no longer exists. Restore that model folder, or use the final output folder of the run.");
            string? unet = Directory.Exists(System.IO.Path.Combine(full, "unet")) ? System.IO.Path.Combine(full, "unet") : null;
            string? te = Directory.Exists(System.IO.Path.Combine(full, "text_encoder")) ? System.IO.Path.Combine(full, "text_encoder") : null;
            return new ModelSource(full, System.IO.Path.GetFullPath(baseModel), unet, te, true) { LoRAWeights = LoRAFilesIn(full) };
        }
        var lora = System.IO.Path.Combine(full, Lora.LoRAWeights.FileName);
        if (File.Exists(lora) && !File.Exists(System.IO.Path.Combine(full, "model_index.json")))
        {
            // A LoRA run's final output: the adapter file records its base model in its metadata.
            using var file = IO.SafetensorsFile.Open(lora);
            if (!file.Metadata.TryGetValue(Lora.LoRAWeights.BaseModelMetadataKey, out var baseModel))
                throw new InvalidDataException($"'{lora}' does not record its base model. Use -Model <base model> -LoRA '{lora}' instead.");
            if (!Directory.Exists(baseModel))
                throw new DirectoryNotFoundException($"LoRA output '{full}' was trained from '{baseModel}', which no longer exists. Use -Model <base model> -LoRA '{lora}'.");
            return new ModelSource(full, System.IO.Path.GetFullPath(baseModel), null, null, false) { LoRAWeights = new[] { lora } };
        }
        return new ModelSource(full, full, null, null, false);
    }

    static IReadOnlyList<string> LoRAFilesIn(string folder)
    {
        var lora = System.IO.Path.Combine(folder, Lora.LoRAWeights.FileName);
        return File.Exists(lora) ? new[] { lora } : Array.Empty<string>();
    }
}
