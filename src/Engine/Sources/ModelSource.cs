namespace DreamBooth.Engine.Sources;

public enum ModelSourceKind { DiffusersFolder, SingleFile, HubId }

/// <summary>
/// What a <c>-Model</c> argument names: an existing diffusers folder, a single-file checkpoint, or a Hub id
/// (a local path wins over a Hub id of the same spelling, as in diffusers).
/// </summary>
public sealed record ModelSource(ModelSourceKind Kind, string Path, HubModelId? HubId = null)
{
    public static ModelSource Classify(string model)
    {
        if (string.IsNullOrWhiteSpace(model)) throw new ModelSourceException("No model was given.");
        if (Directory.Exists(model))
        {
            if (!File.Exists(System.IO.Path.Combine(model, "model_index.json")))
                throw new ModelSourceException($"'{model}' is a folder but not a diffusers pipeline (no model_index.json).");
            return new ModelSource(ModelSourceKind.DiffusersFolder, System.IO.Path.GetFullPath(model));
        }
        if (File.Exists(model))
        {
            PickleRefusal.ThrowIfPickle(model);
            if (!LdmCheckpoint.IsLdmCheckpoint(model))
                throw new ModelSourceException($"'{model}' is not a Stable Diffusion 1.x/2.x single-file safetensors checkpoint.");
            return new ModelSource(ModelSourceKind.SingleFile, System.IO.Path.GetFullPath(model));
        }
        if (HubModelId.TryParse(model, out var id)) return new ModelSource(ModelSourceKind.HubId, model, id);
        throw new ModelSourceException($"'{model}' is neither an existing folder or file nor a Hugging Face id (owner/name[@revision]).");
    }

    /// <summary>
    /// A local diffusers folder for this source: the folder itself, the Hub snapshot (from the cache, else downloaded),
    /// or for a single file a conversion into <paramref name="singleFileDestination"/>.
    /// </summary>
    public string ToLocalFolder(HubOptions hub, string? singleFileDestination = null, ImportOptions? import = null,
        IProgress<DownloadProgress>? downloadProgress = null, IProgress<string>? messages = null, CancellationToken cancellationToken = default)
    {
        switch (Kind)
        {
            case ModelSourceKind.DiffusersFolder: return Path;
            case ModelSourceKind.HubId:
                using (var d = new HubDownloader(hub)) return d.EnsureSnapshot(HubId!, downloadProgress, cancellationToken);
            default:
                if (singleFileDestination is null) throw new ModelSourceException($"Converting '{Path}' needs a destination folder.");
                if (File.Exists(System.IO.Path.Combine(singleFileDestination, "model_index.json")) && import?.Overwrite != true) return singleFileDestination;
                LdmCheckpoint.Import(Path, singleFileDestination, import, messages, cancellationToken);
                return singleFileDestination;
        }
    }
}
