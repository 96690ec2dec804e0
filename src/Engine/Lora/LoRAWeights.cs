using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using DreamBooth.Engine.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Lora;

/// <summary>
/// A LoRA file's adapters, per component (unet, text_encoder) and module name, whatever key layout the file used
/// (detected from its keys). Writes diffusers' <c>pytorch_lora_weights.safetensors</c> layout or kohya's.
/// </summary>
public sealed class LoRAWeights : IDisposable
{
    /// <summary>diffusers' file name for LoRA weights (LORA_WEIGHT_NAME_SAFE).</summary>
    public const string FileName = "pytorch_lora_weights.safetensors";
    /// <summary>The kohya / A1111 copy a run writes when asked.</summary>
    public const string KohyaFileName = "pytorch_lora_weights_kohya.safetensors";
    /// <summary>diffusers' safetensors metadata key for the PEFT LoraConfig (LORA_ADAPTER_METADATA_KEY).</summary>
    public const string AdapterMetadataKey = "lora_adapter_metadata";
    /// <summary>Our metadata key recording the base model the adapters were trained on.</summary>
    public const string BaseModelMetadataKey = "dreambooth_base_model";

    public LoRAFormat Format { get; }
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, LoRAModuleWeights>> Components { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    public string? BaseModel => Metadata.TryGetValue(BaseModelMetadataKey, out var b) ? b : null;

    public LoRAWeights(LoRAFormat format, IReadOnlyDictionary<string, IReadOnlyDictionary<string, LoRAModuleWeights>> components,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        Format = format; Components = components; Metadata = metadata ?? new Dictionary<string, string>();
    }

    public IReadOnlyDictionary<string, LoRAModuleWeights> For(string component)
        => Components.TryGetValue(component, out var c) ? c : new Dictionary<string, LoRAModuleWeights>();

    // ---- reading -------------------------------------------------------------------------------------------------

    static readonly Regex s_legacyProcessor = new(@"^(?<m>.+)\.processor\.(?<p>to_q|to_k|to_v|to_out)_lora\.(?<d>down|up)\.weight$", RegexOptions.CultureInvariant);

    /// <summary>Reads a LoRA safetensors file in any supported layout (fp32 tensors on the CPU).</summary>
    public static LoRAWeights Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"LoRA file '{path}' does not exist.", path);
        using var file = SafetensorsFile.Open(path);
        var keys = file.Keys.ToList();
        var format = Detect(keys, path);
        // component → module → (down, up, alpha)
        var parts = new Dictionary<string, Dictionary<string, (Tensor? Down, Tensor? Up, double? Alpha)>>();
        void Put(string component, string module, string what, Func<Tensor> read)
        {
            if (!parts.TryGetValue(component, out var c)) parts[component] = c = new();
            c.TryGetValue(module, out var e);
            switch (what)
            {
                case "down": e.Down = read(); break;
                case "up": e.Up = read(); break;
                case "alpha": using (var a = read()) e.Alpha = a.to(ScalarType.Float64).item<double>(); break;
            }
            c[module] = e;
        }
        Func<Tensor> Reader(string key) => () => file.Read(key, ScalarType.Float32);
        var metadataAlphas = AlphasFromMetadata(file.Metadata);

        foreach (var key in keys)
        {
            string? component = null, module = null, what = null;
            switch (format)
            {
                case LoRAFormat.Diffusers:
                    component = key.StartsWith("text_encoder.", StringComparison.Ordinal) ? LoRATargets.TextEncoder : key.StartsWith("unet.", StringComparison.Ordinal) ? LoRATargets.Unet : null;
                    if (component is null) break;
                    var rest = key[(component.Length + 1)..];
                    (module, what) = rest.EndsWith(".lora_A.weight", StringComparison.Ordinal) ? (rest[..^".lora_A.weight".Length], "down")
                        : rest.EndsWith(".lora_B.weight", StringComparison.Ordinal) ? (rest[..^".lora_B.weight".Length], "up")
                        : rest.EndsWith(".alpha", StringComparison.Ordinal) ? (rest[..^".alpha".Length], "alpha") : (null, null);
                    break;
                case LoRAFormat.Kohya:
                    var dot = key.IndexOf('.');
                    if (dot < 0) break;
                    var flat = key[..dot]; var suffix = key[(dot + 1)..];
                    if (flat.StartsWith("lora_unet_", StringComparison.Ordinal)) { component = LoRATargets.Unet; module = flat["lora_unet_".Length..]; }
                    else if (flat.StartsWith("lora_te1_", StringComparison.Ordinal)) { component = LoRATargets.TextEncoder; module = flat["lora_te1_".Length..]; }
                    else if (flat.StartsWith("lora_te_", StringComparison.Ordinal)) { component = LoRATargets.TextEncoder; module = flat["lora_te_".Length..]; }
                    what = suffix switch { "lora_down.weight" => "down", "lora_up.weight" => "up", "alpha" => "alpha", _ => null };
                    break;
                case LoRAFormat.DiffusersLegacy:
                    var k = key;
                    component = LoRATargets.Unet;
                    if (k.StartsWith("text_encoder.", StringComparison.Ordinal)) { component = LoRATargets.TextEncoder; k = k["text_encoder.".Length..]; }
                    else if (k.StartsWith("unet.", StringComparison.Ordinal)) k = k["unet.".Length..];
                    var m = s_legacyProcessor.Match(k);
                    if (m.Success) { module = m.Groups["m"].Value + "." + (m.Groups["p"].Value == "to_out" ? "to_out.0" : m.Groups["p"].Value); what = m.Groups["d"].Value; }
                    else if (k.EndsWith(".lora.down.weight") || k.EndsWith(".lora_linear_layer.down.weight")) { module = k[..k.LastIndexOf(k.Contains(".lora.") ? ".lora." : ".lora_linear_layer.", StringComparison.Ordinal)]; what = "down"; }
                    else if (k.EndsWith(".lora.up.weight") || k.EndsWith(".lora_linear_layer.up.weight")) { module = k[..k.LastIndexOf(k.Contains(".lora.") ? ".lora." : ".lora_linear_layer.", StringComparison.Ordinal)]; what = "up"; }
                    else if (k.EndsWith(".alpha")) { module = k[..^".alpha".Length]; what = "alpha"; }
                    if (module is not null && module.EndsWith(".to_out", StringComparison.Ordinal)) module += ".0";
                    break;
            }
            if (component is null || module is null || what is null)
                throw new InvalidDataException($"'{path}': key '{key}' is not a LoRA key of the {format} layout (only UNet and text-encoder LoRA adapters are supported).");
            Put(component, module, what, Reader(key));
        }

        var components = new Dictionary<string, IReadOnlyDictionary<string, LoRAModuleWeights>>();
        foreach (var (component, modules) in parts)
        {
            var dict = new Dictionary<string, LoRAModuleWeights>();
            foreach (var (module, e) in modules)
            {
                if (e.Down is null || e.Up is null)
                    throw new InvalidDataException($"'{path}': {component} module '{module}' has only its {(e.Down is null ? "up (B)" : "down (A)")} matrix.");
                double? alpha = e.Alpha ?? (metadataAlphas.TryGetValue(component, out var ma) ? ma : null);
                dict[module] = new LoRAModuleWeights(e.Down, e.Up, alpha);
            }
            components[component] = dict;
        }
        return new LoRAWeights(format, components, file.Metadata.ToDictionary(kv => kv.Key, kv => kv.Value));
    }

    /// <summary>The key layout of a LoRA file, from its key names.</summary>
    public static LoRAFormat Detect(IReadOnlyCollection<string> keys, string path = "LoRA file")
    {
        if (keys.Count == 0) throw new InvalidDataException($"'{path}' holds no tensors.");
        if (keys.Any(k => k.EndsWith(".lora_A.weight", StringComparison.Ordinal) || k.EndsWith(".lora_B.weight", StringComparison.Ordinal))) return LoRAFormat.Diffusers;
        if (keys.Any(k => k.StartsWith("lora_unet_", StringComparison.Ordinal) || k.StartsWith("lora_te", StringComparison.Ordinal))) return LoRAFormat.Kohya;
        if (keys.Any(k => k.Contains(".lora.down.", StringComparison.Ordinal) || k.Contains("_lora.down.", StringComparison.Ordinal) || k.Contains(".lora_linear_layer.", StringComparison.Ordinal)))
            return LoRAFormat.DiffusersLegacy;
        throw new InvalidDataException($"'{path}' is not a LoRA file this module can read (expected diffusers 'unet.….lora_A.weight' keys or kohya 'lora_unet_….lora_down.weight' keys; first key '{keys.First()}').");
    }

    /// <summary>lora_alpha per component from diffusers' adapter metadata ({"unet.lora_alpha": 8, ...} or a bare LoraConfig).</summary>
    static Dictionary<string, double> AlphasFromMetadata(IReadOnlyDictionary<string, string> metadata)
    {
        var result = new Dictionary<string, double>();
        if (!metadata.TryGetValue(AdapterMetadataKey, out var json)) return result;
        try
        {
            if (JsonNode.Parse(json) is not JsonObject o) return result;
            foreach (var component in new[] { LoRATargets.Unet, LoRATargets.TextEncoder })
                if (o[component + ".lora_alpha"] is JsonValue v) result[component] = v.GetValue<double>();
            if (o["lora_alpha"] is JsonValue bare) result.TryAdd(LoRATargets.Unet, bare.GetValue<double>());
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException) { /* metadata is advisory */ }
        return result;
    }

    // ---- writing -------------------------------------------------------------------------------------------------

    /// <summary>Writes the networks' adapters (fp32) in <paramref name="format"/>; the base model goes into the metadata.</summary>
    public static void Save(string path, IEnumerable<LoRANetwork> networks, LoRAFormat format = LoRAFormat.Diffusers, string? baseModel = null)
    {
        var list = networks.ToList();
        var tensors = new List<KeyValuePair<string, Tensor>>();
        var metadata = new Dictionary<string, string> { ["format"] = "pt" };
        if (baseModel is not null) metadata[BaseModelMetadataKey] = baseModel;
        using var scope = torch.NewDisposeScope();
        switch (format)
        {
            case LoRAFormat.Diffusers:
                var config = new JsonObject();
                foreach (var n in list)
                {
                    foreach (var (name, _, layer) in n.Layers)
                    {
                        tensors.Add(new($"{n.Component}.{name}.lora_A.weight", layer.Down.detach().to(ScalarType.Float32).cpu()));
                        tensors.Add(new($"{n.Component}.{name}.lora_B.weight", layer.Up.detach().to(ScalarType.Float32).cpu()));
                    }
                    if (n.Layers.Count > 0)
                    {
                        var first = n.Layers[0].Layer;
                        // PEFT LoraConfig fields diffusers packs per component (_pack_dict_with_prefix).
                        config[n.Component + ".r"] = first.Rank;
                        config[n.Component + ".lora_alpha"] = first.Alpha;
                        config[n.Component + ".init_lora_weights"] = true;
                        config[n.Component + ".target_modules"] = new JsonArray(LoRATargets.For(n.Component).Select(t => (JsonNode)JsonValue.Create(t)!).ToArray());
                    }
                }
                metadata[AdapterMetadataKey] = config.ToJsonString();
                break;
            case LoRAFormat.Kohya:
                foreach (var n in list)
                {
                    string prefix = n.Component == LoRATargets.Unet ? "lora_unet_" : "lora_te_";
                    foreach (var (name, _, layer) in n.Layers)
                    {
                        var flat = prefix + LoRATargets.Flat(name);
                        tensors.Add(new(flat + ".lora_down.weight", layer.Down.detach().to(ScalarType.Float32).cpu()));
                        tensors.Add(new(flat + ".lora_up.weight", layer.Up.detach().to(ScalarType.Float32).cpu()));
                        tensors.Add(new(flat + ".alpha", torch.tensor((float)layer.Alpha)));
                    }
                }
                if (list.Count > 0 && list[0].Layers.Count > 0)
                {
                    metadata["ss_network_module"] = "networks.lora";
                    metadata["ss_network_dim"] = list[0].Layers[0].Layer.Rank.ToString(CultureInfo.InvariantCulture);
                    metadata["ss_network_alpha"] = list[0].Layers[0].Layer.Alpha.ToString(CultureInfo.InvariantCulture);
                }
                break;
            default:
                throw new NotSupportedException($"Writing the {format} layout is not supported; use Diffusers or Kohya.");
        }
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        SafetensorsWriter.Write(path, tensors, metadata);
    }

    public void Dispose()
    {
        foreach (var c in Components.Values)
            foreach (var w in c.Values) { w.Down.Dispose(); w.Up.Dispose(); }
    }
}
