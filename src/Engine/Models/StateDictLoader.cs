using DreamBooth.Engine.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>Thrown when a weights file does not fit a model: missing keys or shape mismatches, all listed.</summary>
public sealed class StateDictMismatchException : FormatException
{
    public IReadOnlyList<string> Missing { get; }
    public IReadOnlyList<string> ShapeMismatches { get; }

    public StateDictMismatchException(string source, IReadOnlyList<string> missing, IReadOnlyList<string> shapeMismatches)
        : base(Describe(source, missing, shapeMismatches))
    { Missing = missing; ShapeMismatches = shapeMismatches; }

    static string Describe(string source, IReadOnlyList<string> missing, IReadOnlyList<string> shapes)
    {
        var parts = new List<string>();
        if (missing.Count > 0) parts.Add($"{missing.Count} missing tensor(s): {string.Join(", ", missing.Take(10))}{(missing.Count > 10 ? ", …" : "")}");
        if (shapes.Count > 0) parts.Add($"{shapes.Count} shape mismatch(es): {string.Join("; ", shapes.Take(10))}{(shapes.Count > 10 ? "; …" : "")}");
        return $"The weights in '{source}' do not fit the model built from its config: {string.Join("; ", parts)}. Check that config.json belongs to these weights.";
    }
}

/// <summary>
/// Loads weights into a module by diffusers' exact parameter names. TorchSharp's load_state_dict broadcasts
/// mismatched shapes silently, so names and shapes are checked here first; tensors are streamed one at a time
/// from the memory-mapped file straight into the parameters (converted to the parameter's dtype).
/// </summary>
public static class StateDictLoader
{
    /// <summary>Loads <paramref name="file"/> into <paramref name="module"/>. Returns the names in the file the module does not have.</summary>
    public static IReadOnlyList<string> Load(nn.Module module, ISafetensorsSource file)
    {
        var targets = module.state_dict();
        var missing = targets.Keys.Where(k => !file.Contains(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        var shapes = new List<string>();
        foreach (var (name, t) in targets)
        {
            if (!file.Contains(name)) continue;
            var e = file[name];
            if (!e.Shape.SequenceEqual(t.shape))
                shapes.Add($"{name} is [{string.Join(", ", e.Shape)}] in the file, [{string.Join(", ", t.shape)}] in the model");
        }
        if (missing.Count > 0 || shapes.Count > 0) throw new StateDictMismatchException(file.Path, missing, shapes);

        using (torch.no_grad())
        {
            foreach (var (name, t) in targets)
            {
                file.CopyInto(name, t);   // straight from the mapped file where dtype and layout allow, else converted
            }
        }
        return file.Keys.Where(k => !targets.ContainsKey(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
    }

    /// <summary>Loads from a path (see <see cref="Load(nn.Module, SafetensorsFile)"/>).</summary>
    public static IReadOnlyList<string> Load(nn.Module module, string path)
    {
        using var file = SafetensorsFile.Open(path);
        return Load(module, file);
    }

    /// <summary>
    /// Saves the module's state dict (parameters and persistent buffers) under its own names; with
    /// <paramref name="dtype"/>, its floating-point tensors converted to it (one at a time) and the others as they are.
    /// </summary>
    public static void Save(nn.Module module, string path, IReadOnlyDictionary<string, string>? metadata = null, ScalarType? dtype = null)
    {
        metadata ??= new Dictionary<string, string> { ["format"] = "pt" };
        if (dtype is not ScalarType to) { SafetensorsWriter.Write(path, module.state_dict(), metadata); return; }
        using var scope = torch.NewDisposeScope();
        SafetensorsWriter.Write(path, module.state_dict().Select(kv =>
            new KeyValuePair<string, Tensor>(kv.Key, kv.Value.is_floating_point() && kv.Value.dtype != to ? kv.Value.detach().to(to) : kv.Value)), metadata);
    }
}
