using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using DreamBooth.Engine.Sources;

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

    /// <summary>
    /// Resolves anything a user may pass as -Model: an existing folder (as <see cref="Resolve(string)"/>), a single-file
    /// SD checkpoint (.safetensors, imported once into <see cref="SingleFileCacheFolder"/> and reused), or a Hub id
    /// <c>owner/name[@revision]</c> (its snapshot in the Hugging Face cache, downloaded when missing unless offline).
    /// A local path wins over a Hub id of the same spelling, as in diffusers.
    /// </summary>
    public static ModelSource Resolve(string model, HubOptions hub, IProgress<string>? messages = null,
        IProgress<DownloadProgress>? downloads = null, CancellationToken cancellationToken = default)
    {
        if (Directory.Exists(model)) return Resolve(model);
        if (File.Exists(model))
        {
            var file = System.IO.Path.GetFullPath(model);
            var kind = Sources.ModelSource.Classify(file);   // refuses pickles and non-SD files with a clear message
            var folder = SingleFileCacheFolder(file);
            if (!File.Exists(System.IO.Path.Combine(folder, "model_index.json")))
            {
                messages?.Report($"Importing '{file}' into '{folder}' (once; later calls reuse it).");
                // Import into a sibling folder and rename, so an interrupted import is never taken for a model.
                var partial = folder + ".partial-" + Guid.NewGuid().ToString("N")[..8];
                try
                {
                    var (tokenizer, standIn) = SingleFileTokenizer(hub);
                    kind.ToLocalFolder(hub, partial, new ImportOptions { TokenizerFolder = tokenizer, TokenizerIsClipStandIn = standIn }, null, messages, cancellationToken);
                    if (!Directory.Exists(System.IO.Path.Combine(partial, "tokenizer")))
                        throw new ModelSourceException($"'{file}' holds no tokenizer and none was found: set DREAMBOOTH_TOKENIZER to a CLIP tokenizer folder (vocab.json, merges.txt), have openai/clip-vit-large-patch14 in the Hugging Face cache, or use Import-DreamBoothCheckpoint -TokenizerFolder.");
                    if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
                    Directory.Move(partial, folder);
                }
                finally { if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true); }
            }
            return Resolve(folder);
        }
        if (HubModelId.TryParse(model, out var id))
        {
            using var downloader = new HubDownloader(hub);
            return Resolve(downloader.EnsureSnapshot(id, downloads, cancellationToken));
        }
        return Resolve(model);   // says the folder does not exist
    }

    /// <summary>
    /// Where a single-file checkpoint is converted to a diffusers folder: <c>$DREAMBOOTH_CACHE</c>, else
    /// <c>$XDG_CACHE_HOME/dreambooth</c> (<c>~/.cache/dreambooth</c>; <c>%LOCALAPPDATA%\dreambooth</c> on Windows),
    /// then <c>single-file/&lt;file name&gt;-&lt;hash of path, size and time&gt;</c>: a changed file is imported again.
    /// </summary>
    public static string SingleFileCacheFolder(string file)
    {
        var info = new FileInfo(file);
        var identity = $"{info.FullName}|{info.Length}|{info.LastWriteTimeUtc.Ticks}";
        var hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(identity)))[..12].ToLowerInvariant();
        return System.IO.Path.Combine(CacheRoot(), "single-file", System.IO.Path.GetFileNameWithoutExtension(file) + "-" + hash);
    }

    /// <summary>
    /// The CLIP tokenizer a single-file import copies (the file holds none): <c>$DREAMBOOTH_TOKENIZER</c> as the user
    /// gave it, else openai/clip-vit-large-patch14 from the Hugging Face cache as a stand-in (SD 1.x and 2.x share its
    /// vocabulary; on an SD 2.x file the import gives it SD 2.x's pad token), else none.
    /// </summary>
    static (string? Folder, bool StandIn) SingleFileTokenizer(HubOptions hub)
    {
        if (Environment.GetEnvironmentVariable("DREAMBOOTH_TOKENIZER") is { Length: > 0 } dir) return (dir, false);
        var cache = new HuggingFaceCache(hub.CacheDir);
        var clip = HubModelId.Parse("openai/clip-vit-large-patch14");
        if (cache.CommitOf(clip) is { } commit && File.Exists(System.IO.Path.Combine(cache.SnapshotFolder(clip, commit), "vocab.json")))
            return (cache.SnapshotFolder(clip, commit), true);
        return (null, false);
    }

    static string CacheRoot()
    {
        if (Environment.GetEnvironmentVariable("DREAMBOOTH_CACHE") is { Length: > 0 } dir) return dir;
        if (OperatingSystem.IsWindows()) return System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData), "dreambooth");
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        return System.IO.Path.Combine(string.IsNullOrEmpty(xdg) ? System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache") : xdg, "dreambooth");
    }
}
