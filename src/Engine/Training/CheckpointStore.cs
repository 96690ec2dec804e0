using System.Globalization;
using System.Text.Json;
using DreamBooth.Engine.Pipelines;

namespace DreamBooth.Engine.Training;

/// <summary>
/// checkpoint-N folders in a run's output: written to a temporary folder and renamed into place (never a half-written
/// checkpoint), listed by step, pruned oldest-first, and found again for resume ("latest" or a given one).
/// </summary>
public static class CheckpointStore
{
    public const string OptimizerFile = "optimizer.safetensors";
    static readonly JsonSerializerOptions s_json = new() { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>checkpoint-N folders of <paramref name="outputDirectory"/>, by ascending N.</summary>
    public static IReadOnlyList<(int Step, string Path)> List(string outputDirectory)
    {
        if (!Directory.Exists(outputDirectory)) return Array.Empty<(int, string)>();
        return Directory.EnumerateDirectories(outputDirectory, "checkpoint-*")
            .Select(d => (Ok: int.TryParse(Path.GetFileName(d)["checkpoint-".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out var n), n, d))
            .Where(x => x.Ok && File.Exists(Path.Combine(x.d, ModelSource.CheckpointManifest)))
            .OrderBy(x => x.n).Select(x => (x.n, Path.GetFullPath(x.d))).ToList();
    }

    /// <summary>Writes checkpoint-{step} atomically; <paramref name="writeWeights"/> fills the temporary folder.</summary>
    public static string Save(string outputDirectory, TrainingState state, Action<string> writeWeights)
    {
        var final = Path.GetFullPath(Path.Combine(outputDirectory, $"checkpoint-{state.GlobalStep}"));
        var temp = final + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        Directory.CreateDirectory(temp);
        try
        {
            writeWeights(temp);
            state.SavedAt = DateTime.UtcNow;
            File.WriteAllText(Path.Combine(temp, ModelSource.CheckpointManifest), JsonSerializer.Serialize(state, s_json));
            if (Directory.Exists(final))
            {
                // Same step saved again (e.g. final save after a periodic one): swap it in.
                var old = final + ".old-" + Guid.NewGuid().ToString("N")[..8];
                Directory.Move(final, old);
                Directory.Move(temp, final);
                Directory.Delete(old, true);
            }
            else Directory.Move(temp, final);
            return final;
        }
        catch
        {
            try { if (Directory.Exists(temp)) Directory.Delete(temp, true); } catch { /* best effort */ }
            throw;
        }
    }

    public static TrainingState ReadState(string checkpoint)
    {
        var file = Path.Combine(checkpoint, ModelSource.CheckpointManifest);
        if (!File.Exists(file)) throw new FileNotFoundException($"'{checkpoint}' is not a DreamBooth checkpoint: {ModelSource.CheckpointManifest} is missing.", file);
        try { return JsonSerializer.Deserialize<TrainingState>(File.ReadAllText(file), s_json) ?? throw new InvalidDataException("empty"); }
        catch (JsonException e) { throw new InvalidDataException($"'{file}' is damaged ({e.Message}). Resume from an earlier checkpoint.", e); }
    }

    /// <summary>The checkpoint-N folders of a run's output folder by ascending step, or a checkpoint folder itself.</summary>
    public static IReadOnlyList<string> FoldersOf(string path)
    {
        var full = Path.GetFullPath(path);
        if (!Directory.Exists(full))
            throw new DirectoryNotFoundException(File.Exists(full)
                ? $"'{full}' is a file. Give a training output folder or one of its checkpoint-N folders."
                : $"'{full}' does not exist. Give a training output folder or one of its checkpoint-N folders.");
        return File.Exists(Path.Combine(full, ModelSource.CheckpointManifest)) ? new[] { full } : List(full).Select(c => c.Path).ToArray();
    }

    /// <summary>A checkpoint as its manifest describes it (loss and learning rate NaN where the manifest predates them).</summary>
    public static CheckpointInfo Describe(string checkpoint)
    {
        var state = ReadState(checkpoint);
        return new CheckpointInfo(Path.GetFullPath(checkpoint), state.GlobalStep, state.Epoch, state.Loss ?? double.NaN,
            state.LearningRate ?? double.NaN, state.SavedAt.ToLocalTime());
    }

    /// <summary>A run's output folder (→ its latest checkpoint) or a checkpoint folder itself.</summary>
    public static string FindForResume(string path)
    {
        var full = Path.GetFullPath(path);
        if (!Directory.Exists(full)) throw new DirectoryNotFoundException($"'{full}' does not exist. Give a training output folder or one of its checkpoint-N folders.");
        if (File.Exists(Path.Combine(full, ModelSource.CheckpointManifest))) return full;
        var all = List(full);
        if (all.Count == 0) throw new FileNotFoundException($"'{full}' holds no checkpoint-N folder to resume from. Start a run with Start-DreamBoothTraining (-CheckpointingSteps sets how often checkpoints are saved).");
        return all[^1].Path;
    }

    /// <summary>Deletes the oldest checkpoints so that at most <paramref name="keep"/> remain.</summary>
    public static void Prune(string outputDirectory, int keep, Func<string, bool>? confirm, Action<string>? log)
    {
        var all = List(outputDirectory);
        foreach (var (_, path) in all.Take(Math.Max(0, all.Count - Math.Max(0, keep))))
        {
            if (confirm is not null && !confirm(path)) continue;
            Directory.Delete(path, true);
            log?.Invoke($"Removed old checkpoint {path}");
        }
    }
}
