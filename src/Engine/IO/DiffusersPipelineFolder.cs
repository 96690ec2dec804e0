using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace DreamBooth.Engine.IO;

/// <summary>One entry of model_index.json: <c>"unet": ["diffusers", "UNet2DConditionModel"]</c>.</summary>
public sealed record DiffusersComponent(string Library, string ClassName);

/// <summary>
/// A pipeline folder as diffusers' <c>DiffusionPipeline.save_pretrained</c> writes it: <c>model_index.json</c> naming the
/// pipeline class and, per component, its <c>[library, class]</c> (<c>[null, null]</c> for an absent optional one), and a
/// sub-folder per component with its config and weights. Only safetensors weights are resolved; pickle files are
/// recognised and refused (see <see cref="PickleWeightsException"/>).
/// </summary>
public sealed partial class DiffusersPipelineFolder
{
    public const string ModelIndexFileName = "model_index.json";

    /// <summary>Weight file stems, diffusers' (<c>SAFETENSORS_WEIGHTS_NAME</c>) then transformers' (<c>SAFE_WEIGHTS_NAME</c>).</summary>
    static readonly string[] s_weightStems = { "diffusion_pytorch_model", "model" };
    /// <summary>Config file names by the component kinds that use them (models, schedulers, feature extractors, tokenizers).</summary>
    static readonly string[] s_configNames = { "config.json", "scheduler_config.json", "preprocessor_config.json", "tokenizer_config.json" };
    static readonly string[] s_pickleExtensions = { ".bin", ".ckpt", ".pt", ".pth", ".pkl" };

    public string Root { get; }
    public ConfigJson ModelIndex { get; }
    /// <summary><c>_class_name</c>, e.g. StableDiffusionPipeline.</summary>
    public string ClassName { get; }
    /// <summary><c>_diffusers_version</c> of the library that saved the folder, if recorded.</summary>
    public string? DiffusersVersion { get; }
    /// <summary>Every component listed in model_index.json; null where it is <c>[null, null]</c>.</summary>
    public IReadOnlyDictionary<string, DiffusersComponent?> Components { get; }

    DiffusersPipelineFolder(string root, ConfigJson index, string className, string? version, Dictionary<string, DiffusersComponent?> components)
    { Root = root; ModelIndex = index; ClassName = className; DiffusersVersion = version; Components = components; }

    public static DiffusersPipelineFolder Open(string path)
    {
        var root = Path.GetFullPath(path);
        if (!Directory.Exists(root))
            throw new DiffusersFolderException(root, File.Exists(root)
                ? $"'{root}' is a file; expected a diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)."
                : $"The model folder '{root}' does not exist.");
        var indexPath = Path.Combine(root, ModelIndexFileName);
        if (!File.Exists(indexPath))
            throw new DiffusersFolderException(root, $"'{root}' is not a diffusers pipeline folder: expected {ModelIndexFileName}, unet/, vae/, text_encoder/, tokenizer/ and scheduler/ in it.");
        ConfigJson index;
        try { index = ConfigJson.Load(indexPath); }
        catch (ModelConfigException e) { throw new DiffusersFolderException(root, e.Message, e); }

        if (!index.Root.TryGetPropertyValue("_class_name", out var cls) || cls is not JsonValue || cls.GetValueKind() != JsonValueKind.String)
            throw new DiffusersFolderException(root, $"{indexPath} lacks \"_class_name\" (the pipeline class, e.g. \"StableDiffusionPipeline\").");
        string? version = index.Root["_diffusers_version"] is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : null;

        var components = new Dictionary<string, DiffusersComponent?>(StringComparer.Ordinal);
        foreach (var (key, value) in index.Root)
        {
            if (key.StartsWith('_') || value is not JsonArray a) continue;   // other keys (requires_safety_checker, ...) are pipeline options
            if (a.Count != 2) throw new DiffusersFolderException(root, $"{indexPath}: \"{key}\" should be [library, class] or [null, null], not {a.ToJsonString()}.");
            string? lib = a[0] is JsonValue l && l.GetValueKind() == JsonValueKind.String ? l.GetValue<string>() : null;
            string? name = a[1] is JsonValue c && c.GetValueKind() == JsonValueKind.String ? c.GetValue<string>() : null;
            if ((lib is null) != (name is null) || (lib is null && (a[0] is not null || a[1] is not null)))
                throw new DiffusersFolderException(root, $"{indexPath}: \"{key}\" should be [library, class] or [null, null], not {a.ToJsonString()}.");
            if (!IsPlainName(key)) throw new DiffusersFolderException(root, $"{indexPath}: component name \"{key}\" is not a plain folder name.");
            components[key] = lib is null ? null : new DiffusersComponent(lib, name!);
        }
        return new DiffusersPipelineFolder(root, index, cls.GetValue<string>(), version, components);
    }

    static bool IsPlainName(string name) => name.Length > 0 && name is not "." and not ".." && name.IndexOfAny(new[] { '/', '\\', ':' }) < 0;

    /// <summary>True when <paramref name="name"/> is listed with a library and class (not <c>[null, null]</c>).</summary>
    public bool Has(string name) => Components.TryGetValue(name, out var c) && c is not null;

    /// <summary>The component's folder; errors if it is not listed, is <c>[null, null]</c>, or its folder is missing.</summary>
    public string ComponentDirectory(string name)
    {
        if (!Components.TryGetValue(name, out var c))
            throw new DiffusersFolderException(Root, $"{ModelIndexFileName} in '{Root}' lists no component \"{name}\" (it lists {string.Join(", ", Components.Keys)}).");
        if (c is null)
            throw new DiffusersFolderException(Root, $"The pipeline in '{Root}' has no \"{name}\" (it is [null, null] in {ModelIndexFileName}).");
        var dir = Path.Combine(Root, name);
        if (!Directory.Exists(dir))
            throw new DiffusersFolderException(dir, $"The \"{name}\" folder ({c.ClassName}) is missing from '{Root}'; the download or copy is incomplete.");
        return dir;
    }

    /// <summary>The component's config file (config.json, scheduler_config.json, preprocessor_config.json or tokenizer_config.json).</summary>
    public string ConfigPath(string name)
    {
        var dir = ComponentDirectory(name);
        foreach (var n in s_configNames)
        {
            var p = Path.Combine(dir, n);
            if (File.Exists(p)) return p;
        }
        throw new DiffusersFolderException(dir, $"'{dir}' has no config file (expected one of {string.Join(", ", s_configNames)}).");
    }

    /// <summary>The component's config, parsed (unknown keys kept).</summary>
    public ConfigJson LoadConfig(string name)
    {
        var p = ConfigPath(name);
        try { return ConfigJson.Load(p); }
        catch (ModelConfigException e) { throw new DiffusersFolderException(p, e.Message, e); }
    }

    /// <summary>
    /// The safetensors file(s) holding the component's weights: <c>diffusion_pytorch_model[.variant].safetensors</c> or
    /// <c>model[.variant].safetensors</c>, or the shards listed by <c>*.safetensors.index[.variant].json</c> (diffusers'
    /// <c>_add_variant</c> puts the variant before the last extension). Without a variant asked, the default names, or
    /// else the folder's only variant. Pickle-only folders throw <see cref="PickleWeightsException"/>.
    /// </summary>
    public IReadOnlyList<string> ResolveWeights(string name, string? variant = null) => ResolveWeightsIn(ComponentDirectory(name), variant);

    /// <summary><see cref="ResolveWeights"/> for a component folder given by its path (a checkpoint's unet/, say).</summary>
    public static IReadOnlyList<string> ResolveWeightsIn(string dir, string? variant = null)
    {
        if (!Directory.Exists(dir)) throw new DiffusersFolderException(dir, $"The model component folder '{dir}' does not exist.");
        if (variant is not null && (!IsPlainName(variant) || variant.Contains('.')))
            throw new ArgumentException($"'{variant}' is not a weights variant name (e.g. fp16).", nameof(variant));
        foreach (var stem in s_weightStems)
        {
            var single = Path.Combine(dir, AddVariant(stem + ".safetensors", variant));
            if (File.Exists(single)) return new[] { single };
            var index = Path.Combine(dir, AddVariant(stem + ".safetensors.index.json", variant));
            if (File.Exists(index))
            {
                var (shards, _, _) = SafetensorsShardSet.ReadIndex(index);
                var paths = shards.Select(s => Path.Combine(dir, s)).ToList();
                var missing = paths.Where(p => !File.Exists(p)).Select(Path.GetFileName).ToList();
                if (missing.Count > 0)
                    throw new DiffusersFolderException(dir, $"'{index}' lists shard(s) that are missing: {string.Join(", ", missing)}.");
                return paths;
            }
        }

        var variants = VariantsIn(dir);
        bool hasDefault = s_weightStems.Any(s => File.Exists(Path.Combine(dir, s + ".safetensors")) || File.Exists(Path.Combine(dir, s + ".safetensors.index.json")));
        if (variant is not null && (variants.Count > 0 || hasDefault))
            throw new DiffusersFolderException(dir, $"'{dir}' has no \"{variant}\" weights; available: {string.Join(", ", (hasDefault ? new[] { "(default, no variant)" } : Array.Empty<string>()).Concat(variants))}.");
        // Only one variant and no default (a download of the fp16 files, say): that variant is the component's weights.
        if (variant is null && variants.Count == 1) return ResolveWeightsIn(dir, variants[0]);
        if (variant is null && variants.Count > 1)
            throw new DiffusersFolderException(dir, $"'{dir}' has several weights variants ({string.Join(", ", variants)}) and no default weights, so which to load is not clear: keep one variant's file(s) there, or rename it (e.g. diffusion_pytorch_model.{variants[0]}.safetensors to diffusion_pytorch_model.safetensors; any precision loads).");
        var pickles = Directory.EnumerateFiles(dir)
            .Where(f => s_pickleExtensions.Contains(Path.GetExtension(f), StringComparer.OrdinalIgnoreCase) || f.EndsWith(".bin.index.json", StringComparison.OrdinalIgnoreCase))
            .OrderBy(f => f, StringComparer.Ordinal).ToList();
        if (pickles.Count > 0) throw new PickleWeightsException(dir, pickles);
        throw new DiffusersFolderException(dir, $"'{dir}' has no weights: expected diffusion_pytorch_model.safetensors or model.safetensors (or a sharded *.safetensors.index.json).");
    }

    /// <summary>The weights variants present for the component (e.g. "fp16"), sorted; the default (no variant) is not listed.</summary>
    public IReadOnlyList<string> Variants(string name) => VariantsIn(ComponentDirectory(name));

    static IReadOnlyList<string> VariantsIn(string dir)
    {
        var found = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var f in Directory.EnumerateFiles(dir).Select(Path.GetFileName))
        {
            var m = VariantFileRegex().Match(f!);
            if (m.Success) found.Add(m.Groups["v1"].Success ? m.Groups["v1"].Value : m.Groups["v2"].Value);
        }
        return found.ToList();
    }

    [GeneratedRegex(@"^(?:diffusion_pytorch_model|model)(?:\.(?<v1>[^.\-]+)\.safetensors|\.safetensors\.index\.(?<v2>[^.]+)\.json)$")]
    private static partial Regex VariantFileRegex();

    /// <summary>
    /// The component's weights (<see cref="ResolveWeightsIn"/>: one file, or the shards an index lists) opened for
    /// loading; pickle-only, empty and ambiguous (several variants, no default) folders throw with what to do.
    /// </summary>
    public static ISafetensorsSource OpenWeights(string componentDir)
    {
        var files = ResolveWeightsIn(componentDir);
        return files.Count == 1 ? SafetensorsFile.Open(files[0]) : SafetensorsShardSet.Open(files, componentDir);
    }

    /// <summary>diffusers' <c>_add_variant</c>: "a.safetensors" + fp16 → "a.fp16.safetensors"; "a.safetensors.index.json" → "a.safetensors.index.fp16.json".</summary>
    public static string AddVariant(string weightsName, string? variant)
    {
        if (variant is null) return weightsName;
        int dot = weightsName.LastIndexOf('.');
        return weightsName[..dot] + "." + variant + weightsName[dot..];
    }

    /// <summary>
    /// Writes <c>model_index.json</c> into <paramref name="folder"/> (atomically). Starts from <paramref name="basedOn"/>
    /// (so unknown keys survive) or an empty index, sets <c>_class_name</c>, <c>_diffusers_version</c> and each given
    /// component (<c>null</c> → <c>[null, null]</c>), and writes keys sorted as diffusers does.
    /// </summary>
    public static void WriteModelIndex(string folder, string className, IReadOnlyDictionary<string, DiffusersComponent?> components,
        ConfigJson? basedOn = null, string? diffusersVersion = null)
    {
        var obj = (JsonObject?)basedOn?.Root.DeepClone() ?? new JsonObject();
        obj["_class_name"] = className;
        obj["_diffusers_version"] = diffusersVersion ?? obj["_diffusers_version"]?.GetValue<string>() ?? "0.32.2";
        foreach (var (name, c) in components)
        {
            if (!IsPlainName(name) || name.StartsWith('_')) throw new ArgumentException($"\"{name}\" is not a component name.", nameof(components));
            obj[name] = c is null ? new JsonArray(null, null) : new JsonArray(c.Library, c.ClassName);
        }
        var sorted = new JsonObject();
        foreach (var kv in obj.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList())
        {
            obj.Remove(kv.Key);
            sorted[kv.Key] = kv.Value;
        }
        Directory.CreateDirectory(folder);
        new ConfigJson(sorted, Path.Combine(folder, ModelIndexFileName)).Save(Path.Combine(folder, ModelIndexFileName));
    }

    /// <summary>Writes this folder's index with some components replaced or added, keeping every other key.</summary>
    public void WriteModelIndex(string folder, IReadOnlyDictionary<string, DiffusersComponent?> changes)
        => WriteModelIndex(folder, ClassName, changes, ModelIndex, DiffusersVersion);
}
