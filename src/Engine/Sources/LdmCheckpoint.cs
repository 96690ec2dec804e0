using System.Text.Json;
using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Sources;

/// <summary>
/// SD 1.x / 2.x single-file checkpoints (the LDM layout A1111 and ComfyUI use) ↔ diffusers pipeline folders.
/// </summary>
public static class LdmCheckpoint
{
    /// <summary>Metadata keys under which <see cref="Export"/> stores the diffusers configs.</summary>
    public const string MetadataPrefix = "dreambooth.";
    static readonly string[] s_components = { "unet", "vae", "text_encoder", "scheduler" };

    /// <summary>True when the file is a safetensors single-file SD checkpoint (has LDM UNet keys).</summary>
    public static bool IsLdmCheckpoint(string file)
    {
        if (!File.Exists(file) || PickleRefusal.LooksLikePickle(file)) return false;
        try { using var f = SafetensorsFile.Open(HuggingFaceCache.RealPath(file)); return f.Contains(UnetKeyMap.LdmPrefix + "input_blocks.0.0.weight"); }
        catch (SafetensorsFormatException) { return false; }
    }

    // ---------------------------------------------------------------- import

    public static ImportReport Import(string file, string destinationFolder, ImportOptions? options = null, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new ImportOptions();
        PickleRefusal.ThrowIfPickle(file);
        if (!File.Exists(file)) throw new ModelSourceException($"Checkpoint '{file}' does not exist.");
        if (File.Exists(Path.Combine(destinationFolder, "model_index.json")) && !options.Overwrite)
            throw new ModelSourceException($"'{destinationFolder}' already holds a model (model_index.json); choose another destination or allow overwriting.");

        using var f = SafetensorsFile.Open(HuggingFaceCache.RealPath(file));
        var inferred = new List<string>();
        var ignored = new List<string>();
        var warnings = new List<string>();
        var embedded = options.UseEmbeddedConfigs ? EmbeddedConfigs(f.Metadata) : new Dictionary<string, JsonObject>();

        // The head count is not in the shapes; an embedded config (our own export) knows it.
        if (options.TextEncoderHeads is null && embedded.TryGetValue("text_encoder", out var storedText)
            && storedText["num_attention_heads"] is JsonValue storedHeads && storedHeads.TryGetValue<int>(out var heads))
            options = options with { TextEncoderHeads = heads };

        Dictionary<string, long[]> Shapes(string prefix) => f.Entries.Where(e => e.Name.StartsWith(prefix, StringComparison.Ordinal))
            .ToDictionary(e => e.Name[prefix.Length..], e => e.Shape, StringComparer.Ordinal);

        var unetShapes = Shapes(UnetKeyMap.LdmPrefix);
        var vaeShapes = Shapes(VaeKeyMap.LdmPrefix);
        if (unetShapes.Count == 0) throw new ModelSourceException($"'{file}' has no '{UnetKeyMap.LdmPrefix}*' tensors; it is not an SD 1.x/2.x single-file checkpoint.");
        if (vaeShapes.Count == 0) throw new ModelSourceException($"'{file}' has no VAE ('{VaeKeyMap.LdmPrefix}*'); import a checkpoint that includes it.");

        // Text encoder: OpenCLIP (SD 2.x) or transformers CLIP (SD 1.x, with or without the text_model. level).
        var openClipShapes = Shapes(OpenClipKeyMap.LdmPrefix);
        var clipShapes = Shapes(ClipKeyMap.LdmPrefix);
        bool openClip = openClipShapes.ContainsKey("transformer.resblocks.0.attn.in_proj_weight");
        bool legacyClip = !openClip && clipShapes.Count > 0 && !clipShapes.Keys.Any(k => k.StartsWith("text_model.", StringComparison.Ordinal));
        if (legacyClip) clipShapes = clipShapes.ToDictionary(kv => "text_model." + kv.Key, kv => kv.Value, StringComparer.Ordinal);
        if (!openClip && clipShapes.Count == 0)
            throw new ModelSourceException($"'{file}' has no text encoder ('{ClipKeyMap.LdmPrefix}*' or '{OpenClipKeyMap.LdmPrefix}*').");
        string layout = openClip ? "SD 2.x (OpenCLIP text encoder)" : "SD 1.x (CLIP text encoder)";
        progress?.Report($"Single file layout: {layout}");

        var unetLayout = UnetLdmLayout.FromLdmKeys(unetShapes.Keys);
        int vaeLevels = UnetLdmLayout.BlockIndices(vaeShapes.Keys, "encoder.down.").Count;
        int vaeLayers = UnetLdmLayout.BlockIndices(vaeShapes.Keys.Where(k => k.StartsWith("encoder.down.0.", StringComparison.Ordinal)).Select(k => k["encoder.down.0.".Length..]), "block.").Count;
        var unetConfig = LdmConfigInference.Unet(unetShapes, unetLayout, options, 1 << (vaeLevels - 1), inferred);
        bool sd2 = openClip || unetConfig["cross_attention_dim"]!.GetValue<int>() == LdmConfigInference.Sd2ContextDim;
        var vaeConfig = LdmConfigInference.Vae(vaeShapes, options, sd2, inferred);

        int textLayers = 0;
        JsonObject textConfig;
        if (openClip)
        {
            int resblocks = UnetLdmLayout.BlockIndices(openClipShapes.Keys, "transformer.resblocks.").Count;
            textLayers = resblocks > OpenClipKeyMap.DroppedFinalResblock ? OpenClipKeyMap.DroppedFinalResblock : resblocks;
            if (resblocks > textLayers)
                inferred.Add($"text_encoder: {resblocks} OpenCLIP resblocks, the last {resblocks - textLayers} unused (SD 2.x conditions on the penultimate layer; diffusers keeps {textLayers})");
            textConfig = LdmConfigInference.OpenClip(openClipShapes, textLayers, options, inferred);
        }
        else textConfig = LdmConfigInference.Clip(clipShapes, options, inferred);

        string prediction = options.PredictionType ?? (sd2 ? "v_prediction" : "epsilon");
        if (options.PredictionType is null)
            inferred.Add($"scheduler.prediction_type = {prediction} ({(sd2 ? "SD 2.x 768 convention; use epsilon for the 512 base model" : "SD 1.x convention")})");
        var schedulerConfig = LdmConfigInference.Scheduler(prediction);

        var configs = new Dictionary<string, JsonObject> { ["unet"] = unetConfig, ["vae"] = vaeConfig, ["text_encoder"] = textConfig, ["scheduler"] = schedulerConfig };
        foreach (var (component, stored) in embedded)
        {
            if (!configs.TryGetValue(component, out var ours)) continue;
            var conflict = ArchitectureKeys(component).FirstOrDefault(k => ours.ContainsKey(k) && !JsonNode.DeepEquals(ours[k], stored[k]));
            if (conflict is not null)
            {
                warnings.Add($"Embedded {component} config disagrees with the weights on '{conflict}' ({stored[conflict]?.ToJsonString()} vs {ours[conflict]?.ToJsonString()}); ignored it.");
                continue;
            }
            // Shapes decide the architecture; the embedded config supplies what shapes cannot tell.
            var merged = (JsonObject)stored.DeepClone();
            foreach (var k in ArchitectureKeys(component)) if (ours.ContainsKey(k)) merged[k] = ours[k]!.DeepClone();
            if (component == "scheduler" && options.PredictionType is not null) merged["prediction_type"] = options.PredictionType;
            configs[component] = merged;
            inferred.Add($"{component}: values the shapes cannot tell taken from the config embedded by the exporter");
        }

        Directory.CreateDirectory(destinationFolder);
        var tensorCount = 0;
        void Convert(string component, string weightsName, KeyMap map, Func<string, string>? rename = null)
        {
            cancellationToken.ThrowIfCancellationRequested();
            progress?.Report($"Converting {component}");
            using var scope = torch.NewDisposeScope();
            var ldm = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var e in f.Entries.Where(e => e.Name.StartsWith(map.LdmPrefix, StringComparison.Ordinal)))
                ldm[rename is null ? e.Name : rename(e.Name)] = f.Read(e.Name);
            var diffusers = map.ToDiffusers(ldm, ignored);
            if (options.DType is { } dt)
                foreach (var k in diffusers.Keys.ToList()) if (diffusers[k].is_floating_point()) diffusers[k] = diffusers[k].to(dt);
            SafetensorsWriter.Write(Path.Combine(destinationFolder, component, weightsName), diffusers, new Dictionary<string, string> { ["format"] = "pt" });
            tensorCount += diffusers.Count;
        }
        Convert("unet", "diffusion_pytorch_model.safetensors", UnetKeyMap.Build(unetLayout));
        Convert("vae", "diffusion_pytorch_model.safetensors", VaeKeyMap.Build(vaeLevels, vaeLayers, vaeConfig["mid_block_add_attention"]!.GetValue<bool>()));
        if (openClip) Convert("text_encoder", "model.safetensors", OpenClipKeyMap.Build(textLayers));
        else Convert("text_encoder", "model.safetensors", ClipKeyMap.Build(),
            legacyClip ? n => n.StartsWith(ClipKeyMap.LdmPrefix, StringComparison.Ordinal) ? ClipKeyMap.LdmPrefix + "text_model." + n[ClipKeyMap.LdmPrefix.Length..] : n : null);

        foreach (var (component, config) in configs)
            new ConfigJson(config, component).Save(Path.Combine(destinationFolder, component, component == "scheduler" ? "scheduler_config.json" : "config.json"));
        if (options.TokenizerFolder is { } tok)
        {
            if (!File.Exists(Path.Combine(tok, "vocab.json")) || !File.Exists(Path.Combine(tok, "merges.txt")))
                throw new ModelSourceException($"Tokenizer folder '{tok}' lacks vocab.json / merges.txt.");
            var tokenizerDir = Path.Combine(destinationFolder, "tokenizer");
            Directory.CreateDirectory(tokenizerDir);
            foreach (var src in Directory.GetFiles(tok)) File.Copy(src, Path.Combine(tokenizerDir, Path.GetFileName(src)), overwrite: true);
            string pad = Tokenization.TokenizerConfig.Load(tokenizerDir).Pad.Content;
            if (openClip && pad != Sd2PadToken)
            {
                if (options.TokenizerIsClipStandIn)
                {
                    SetPadToken(tokenizerDir, Sd2PadToken);
                    inferred.Add($"tokenizer: CLIP ViT-L/14's vocabulary with SD 2.x's pad token '{Sd2PadToken}' (the SD 2.x tokenizer is that vocabulary with that pad token)");
                }
                else warnings.Add($"The tokenizer folder pads with '{pad}', SD 2.x tokenizers with '{Sd2PadToken}': "
                    + "prompts will be encoded unlike diffusers with this model's own tokenizer. Pass an SD 2.x model's tokenizer/ folder (e.g. stabilityai/stable-diffusion-2-1's) to match.");
            }
        }
        else warnings.Add("A single file holds no tokenizer; none was written. Give the model's tokenizer folder with -TokenizerFolder (ImportOptions.TokenizerFolder): "
            + (openClip
                ? "for this SD 2.x file, the tokenizer/ folder of an SD 2.x model such as stabilityai/stable-diffusion-2-1 (it pads with '!', not CLIP ViT-L/14's end token, which changes the text embeddings)."
                : "for this SD 1.x file, openai/clip-vit-large-patch14's tokenizer (vocab.json, merges.txt)."));
        new ConfigJson(ModelIndex(), "model_index.json").Save(Path.Combine(destinationFolder, "model_index.json"));

        var otherKeys = f.Keys.Where(k => !k.StartsWith(UnetKeyMap.LdmPrefix, StringComparison.Ordinal) && !k.StartsWith(VaeKeyMap.LdmPrefix, StringComparison.Ordinal)
                                          && !k.StartsWith("cond_stage_model.", StringComparison.Ordinal));
        ignored.AddRange(otherKeys);
        foreach (var line in inferred) progress?.Report(line);
        return new ImportReport(destinationFolder, layout, inferred, ignored, warnings, tensorCount);
    }

    /// <summary>Keys the tensor shapes decide; an embedded config may not override them.</summary>
    static IEnumerable<string> ArchitectureKeys(string component) => component switch
    {
        "unet" => new[] { "in_channels", "out_channels", "block_out_channels", "layers_per_block", "down_block_types", "up_block_types", "mid_block_type", "cross_attention_dim", "use_linear_projection", "transformer_layers_per_block" },
        "vae" => new[] { "in_channels", "out_channels", "block_out_channels", "layers_per_block", "latent_channels", "mid_block_add_attention", "use_quant_conv", "use_post_quant_conv" },
        "text_encoder" => new[] { "hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size", "max_position_embeddings" },
        _ => Array.Empty<string>(),
    };

    static Dictionary<string, JsonObject> EmbeddedConfigs(IReadOnlyDictionary<string, string> metadata)
    {
        var result = new Dictionary<string, JsonObject>();
        foreach (var c in s_components)
            if (metadata.TryGetValue(MetadataPrefix + c + "_config", out var json))
            {
                try { if (JsonNode.Parse(json) is JsonObject o) result[c] = o; }
                catch (JsonException) { /* a foreign or damaged entry: infer instead */ }
            }
        return result;
    }

    /// <summary>SD 2.x's tokenizer pads with "!" (id 0) where CLIP ViT-L/14's pads with its end token; the padded positions' embeddings differ.</summary>
    const string Sd2PadToken = "!";

    /// <summary>Sets pad_token in special_tokens_map.json, which wins over tokenizer_config.json, as SD 2.x's tokenizer folder has it.</summary>
    static void SetPadToken(string tokenizerDir, string pad)
    {
        var path = Path.Combine(tokenizerDir, "special_tokens_map.json");
        var map = File.Exists(path) ? JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? new JsonObject() : new JsonObject();
        map["pad_token"] = pad;
        File.WriteAllText(path, map.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    static JsonObject ModelIndex() => new()
    {
        ["_class_name"] = "StableDiffusionPipeline",
        ["_diffusers_version"] = "0.32.2",
        ["feature_extractor"] = new JsonArray(null, null),
        ["image_encoder"] = new JsonArray(null, null),
        ["requires_safety_checker"] = false,
        ["safety_checker"] = new JsonArray(null, null),
        ["scheduler"] = new JsonArray("diffusers", "PNDMScheduler"),
        ["text_encoder"] = new JsonArray("transformers", "CLIPTextModel"),
        ["tokenizer"] = new JsonArray("transformers", "CLIPTokenizer"),
        ["unet"] = new JsonArray("diffusers", "UNet2DConditionModel"),
        ["vae"] = new JsonArray("diffusers", "AutoencoderKL"),
    };

    // ---------------------------------------------------------------- export

    public static ExportReport Export(string diffusersFolder, string file, ExportOptions? options = null, IProgress<string>? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new ExportOptions();
        var unetConfig = ConfigJson.Load(Path.Combine(diffusersFolder, "unet", "config.json"));
        var vaeConfig = ConfigJson.Load(Path.Combine(diffusersFolder, "vae", "config.json"));
        var textConfig = ConfigJson.Load(Path.Combine(diffusersFolder, "text_encoder", "config.json"));
        bool openClip = options.OpenClipTextEncoder ?? textConfig.Get("hidden_act", "quick_gelu") == "gelu";

        var vaeChannels = vaeConfig.Require<int[]>("block_out_channels");
        var maps = new (string Component, string Weights, KeyMap Map)[]
        {
            ("unet", options.UnetWeights ?? ComponentWeights(diffusersFolder, "unet", "diffusion_pytorch_model"), UnetKeyMap.Build(UnetLdmLayout.FromConfig(unetConfig))),
            ("vae", options.VaeWeights ?? ComponentWeights(diffusersFolder, "vae", "diffusion_pytorch_model"),
                VaeKeyMap.Build(vaeChannels.Length, vaeConfig.Get("layers_per_block", 2), vaeConfig.Get("mid_block_add_attention", true))),
            ("text_encoder", options.TextEncoderWeights ?? ComponentWeights(diffusersFolder, "text_encoder", "model"),
                openClip ? OpenClipKeyMap.Build(textConfig.Require<int>("num_hidden_layers")) : ClipKeyMap.Build()),
        };

        using var scope = torch.NewDisposeScope();
        var all = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (component, weights, map) in maps)
        {
            cancellationToken.ThrowIfCancellationRequested();
            progress?.Report($"Converting {component} ({weights})");
            PickleRefusal.ThrowIfPickle(weights);
            using var f = SafetensorsFile.Open(HuggingFaceCache.RealPath(weights));
            var tensors = f.ReadAll();
            // transformers checkpoints may carry the non-persistent position_ids buffer; LDM files need not.
            tensors.Remove("text_model.embeddings.position_ids");
            foreach (var (k, t) in map.ToLdm(tensors))
                all[k] = options.DType is { } dt && t.is_floating_point() ? t.to(dt) : t;
        }

        var metadata = new Dictionary<string, string> { ["format"] = "pt" };
        if (options.EmbedConfigs)
        {
            metadata[MetadataPrefix + "unet_config"] = unetConfig.Root.ToJsonString();
            metadata[MetadataPrefix + "vae_config"] = vaeConfig.Root.ToJsonString();
            metadata[MetadataPrefix + "text_encoder_config"] = textConfig.Root.ToJsonString();
            var scheduler = Path.Combine(diffusersFolder, "scheduler", "scheduler_config.json");
            if (File.Exists(scheduler)) metadata[MetadataPrefix + "scheduler_config"] = ConfigJson.Load(scheduler).Root.ToJsonString();
        }
        cancellationToken.ThrowIfCancellationRequested();
        progress?.Report($"Writing {all.Count} tensors to {file}");
        SafetensorsWriter.Write(file, all, metadata);
        var dtypes = string.Join(", ", all.Values.Select(t => t.dtype.ToString()).Distinct());
        return new ExportReport(Path.GetFullPath(file), openClip ? "SD 2.x (OpenCLIP text encoder)" : "SD 1.x (CLIP text encoder)", all.Count, new FileInfo(file).Length, dtypes);
    }

    /// <summary>A component's safetensors weights in a diffusers folder (fp32 name first, then the fp16 variant).</summary>
    public static string ComponentWeights(string folder, string component, string stem)
    {
        foreach (var name in new[] { stem + ".safetensors", stem + ".fp16.safetensors" })
        {
            var p = Path.Combine(folder, component, name);
            if (File.Exists(p)) return HuggingFaceCache.RealPath(p);
        }
        var pickle = Path.Combine(folder, component, stem == "model" ? "pytorch_model.bin" : stem + ".bin");
        if (File.Exists(pickle)) PickleRefusal.ThrowIfPickle(pickle);
        throw new ModelSourceException($"'{Path.Combine(folder, component)}' has no {stem}.safetensors weights (sharded weights are not supported).");
    }
}
