using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Pipelines;

/// <summary>
/// Loaded pipelines kept per (path, dtype, device), so piping many prompts into the inference cmdlet does not reload
/// weights. A cached pipeline is used by one caller at a time (Lease); Clear disposes them.
/// </summary>
public static class PipelineCache
{
    sealed class Entry { public required StableDiffusionPipeline Pipeline; public readonly SemaphoreSlim Gate = new(1, 1); public DateTime LastUsed; }

    static readonly Dictionary<string, Entry> s_entries = new(StringComparer.Ordinal);
    static readonly object s_lock = new();

    static string Key(ModelSource source, ScalarType dtype, Device device)
        => $"{source.Path}|{dtype}|{device}";

    /// <summary>Gets (or loads) the pipeline and holds it until the returned lease is disposed.</summary>
    public static Lease Acquire(ModelSource source, ScalarType dtype, Device device, bool useCache = true)
    {
        if (!useCache) return new Lease(Load(source, dtype, device), null);
        Entry? entry;
        lock (s_lock) s_entries.TryGetValue(Key(source, dtype, device), out entry);
        if (entry is null)
        {
            var loaded = new Entry { Pipeline = Load(source, dtype, device) };
            lock (s_lock)
            {
                if (!s_entries.TryGetValue(Key(source, dtype, device), out entry)) { s_entries[Key(source, dtype, device)] = loaded; entry = loaded; }
                else loaded.Pipeline.Dispose();
            }
        }
        entry.Gate.Wait();
        entry.LastUsed = DateTime.UtcNow;
        return new Lease(entry.Pipeline, entry.Gate);
    }

    public static StableDiffusionPipeline Load(ModelSource source, ScalarType dtype, Device device)
    {
        PipelineMemory.EnsureFits(source, dtype, device, HostMemory.AvailableBytes());
        var p = StableDiffusionPipeline.FromPretrained(source.BaseModel, dtype, device, source.UnetDirectory, source.TextEncoderDirectory);
        p.SourcePath = source.Path;
        // LoRA run output/checkpoint: bake its adapters into this in-memory copy (the base files stay untouched).
        if (source.IsLoRA)
        {
            try { using var set = Lora.LoRAAdapterSet.Apply(p, source.LoRAWeights.Select(f => new Lora.LoRAReference(f))); set.Merge(); }
            catch { p.Dispose(); throw; }
        }
        return p;
    }

    /// <summary>What is cached now (path, dtype, device).</summary>
    public static IReadOnlyList<(string Path, string DType, string Device, DateTime LastUsed)> Entries()
    {
        lock (s_lock) return s_entries.Select(kv => kv.Key.Split('|') is var k ? (k[0], k[1], k[2], kv.Value.LastUsed) : default).ToList();
    }

    /// <summary>Disposes every cached pipeline not in use. Returns how many were released.</summary>
    public static int Clear()
    {
        List<Entry> removed;
        lock (s_lock) { removed = s_entries.Values.ToList(); s_entries.Clear(); }
        foreach (var e in removed) { e.Gate.Wait(); e.Pipeline.Dispose(); e.Gate.Release(); }
        return removed.Count;
    }

    public sealed class Lease : IDisposable
    {
        readonly SemaphoreSlim? _gate;
        public StableDiffusionPipeline Pipeline { get; }
        internal Lease(StableDiffusionPipeline p, SemaphoreSlim? gate) { Pipeline = p; _gate = gate; }
        public void Dispose() { if (_gate is null) Pipeline.Dispose(); else _gate.Release(); }
    }
}
