using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;

namespace DreamBooth.Engine.Tests.IO;

public class DiffusersPipelineFolderTests
{
    /// <summary>A pipeline folder with an index (like tiny-sd's) and empty component folders.</summary>
    static string MakePipeline(TempDir dir, params string[] componentDirs)
    {
        var root = dir["pipe"];
        Directory.CreateDirectory(root);
        File.Copy(Path.Combine(Fixtures.TinySd, "model_index.json"), Path.Combine(root, "model_index.json"));
        foreach (var c in componentDirs) Directory.CreateDirectory(Path.Combine(root, c));
        return root;
    }

    static void Weights(string path)
    {
        using var t = torch.ones(2);
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { [Path.GetFileName(path)] = t });
    }

    [Fact]
    public void OpensTinySd()
    {
        var p = DiffusersPipelineFolder.Open(Fixtures.TinySd);
        Assert.Equal("StableDiffusionPipeline", p.ClassName);
        Assert.Equal("0.32.2", p.DiffusersVersion);
        Assert.Equal(new DiffusersComponent("diffusers", "UNet2DConditionModel"), p.Components["unet"]);
        Assert.Equal(new DiffusersComponent("transformers", "CLIPTextModel"), p.Components["text_encoder"]);
        Assert.Null(p.Components["safety_checker"]);
        Assert.Null(p.Components["feature_extractor"]);
        Assert.False(p.Has("safety_checker"));
        Assert.Equal(new[] { "feature_extractor", "image_encoder", "safety_checker", "scheduler", "text_encoder", "tokenizer", "unet", "vae" },
            p.Components.Keys.OrderBy(k => k, StringComparer.Ordinal));
        Assert.False(p.ModelIndex.Get("requires_safety_checker", true));   // non-component keys are kept

        Assert.Equal(new[] { Path.Combine(Fixtures.TinySd, "unet", "diffusion_pytorch_model.safetensors") }, p.ResolveWeights("unet"));
        Assert.Equal(new[] { Path.Combine(Fixtures.TinySd, "vae", "diffusion_pytorch_model.safetensors") }, p.ResolveWeights("vae"));
        Assert.Equal(new[] { Path.Combine(Fixtures.TinySd, "text_encoder", "model.safetensors") }, p.ResolveWeights("text_encoder"));
        Assert.Empty(p.Variants("unet"));
        Assert.EndsWith("scheduler_config.json", p.ConfigPath("scheduler"));
        Assert.EndsWith("tokenizer_config.json", p.ConfigPath("tokenizer"));
        Assert.Equal(32, p.LoadConfig("unet").Require<int[]>("block_out_channels")[0]);
        Assert.Contains("has no weights", Assert.Throws<DiffusersFolderException>(() => p.ResolveWeights("scheduler")).Message);
        Assert.Contains("[null, null]", Assert.Throws<DiffusersFolderException>(() => p.ComponentDirectory("safety_checker")).Message);
        Assert.Contains("lists no component \"controlnet\"", Assert.Throws<DiffusersFolderException>(() => p.ComponentDirectory("controlnet")).Message);
    }

    [Fact]
    public void ResolvesVariantsAndReportsWhichExist()
    {
        using var dir = new TempDir();
        var root = MakePipeline(dir, "unet", "text_encoder");
        Weights(Path.Combine(root, "unet", "diffusion_pytorch_model.safetensors"));
        Weights(Path.Combine(root, "unet", "diffusion_pytorch_model.fp16.safetensors"));
        Weights(Path.Combine(root, "text_encoder", "model.fp16.safetensors"));
        var p = DiffusersPipelineFolder.Open(root);
        Assert.Equal(new[] { "fp16" }, p.Variants("unet"));
        Assert.EndsWith("diffusion_pytorch_model.fp16.safetensors", Assert.Single(p.ResolveWeights("unet", "fp16")));
        Assert.EndsWith("diffusion_pytorch_model.safetensors", Assert.Single(p.ResolveWeights("unet")));
        var e = Assert.Throws<DiffusersFolderException>(() => p.ResolveWeights("unet", "bf16"));
        Assert.Contains("no \"bf16\" weights; available: (default, no variant), fp16", e.Message);
        // No default weights but one variant: that variant, asked for or not.
        Assert.EndsWith("model.fp16.safetensors", Assert.Single(p.ResolveWeights("text_encoder")));
        Assert.EndsWith("model.fp16.safetensors", Assert.Single(p.ResolveWeights("text_encoder", "fp16")));
        Weights(Path.Combine(root, "text_encoder", "model.bf16.safetensors"));
        Assert.Contains("several weights variants (bf16, fp16)", Assert.Throws<DiffusersFolderException>(() => p.ResolveWeights("text_encoder")).Message);
    }

    [Fact]
    public void ResolvesShardedWeightsThroughTheIndex()
    {
        using var dir = new TempDir();
        var root = MakePipeline(dir, "unet");
        var unet = Path.Combine(root, "unet");
        Weights(Path.Combine(unet, "diffusion_pytorch_model.fp16-00001-of-00002.safetensors"));
        Weights(Path.Combine(unet, "diffusion_pytorch_model.fp16-00002-of-00002.safetensors"));
        File.WriteAllText(Path.Combine(unet, "diffusion_pytorch_model.safetensors.index.fp16.json"), """
            {"metadata": {"total_size": 16}, "weight_map": {
              "diffusion_pytorch_model.fp16-00002-of-00002.safetensors": "diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
              "diffusion_pytorch_model.fp16-00001-of-00002.safetensors": "diffusion_pytorch_model.fp16-00001-of-00002.safetensors"}}
            """);
        var p = DiffusersPipelineFolder.Open(root);
        Assert.Equal(new[] { "fp16" }, p.Variants("unet"));
        var files = p.ResolveWeights("unet", "fp16");
        Assert.Equal(new[] { "diffusion_pytorch_model.fp16-00002-of-00002.safetensors", "diffusion_pytorch_model.fp16-00001-of-00002.safetensors" },
            files.Select(Path.GetFileName));
        using var set = SafetensorsShardSet.OpenIndex(Path.Combine(unet, "diffusion_pytorch_model.safetensors.index.fp16.json"));
        Assert.Equal(2, set.Keys.Count());

        File.Delete(files[1]);
        Assert.Contains("missing: diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
            Assert.Throws<DiffusersFolderException>(() => p.ResolveWeights("unet", "fp16")).Message);
    }

    [Fact]
    public void RefusesPickleWeightsWithoutReadingThem()
    {
        using var dir = new TempDir();
        var root = MakePipeline(dir, "unet");
        File.WriteAllBytes(Path.Combine(root, "unet", "diffusion_pytorch_model.bin"), new byte[] { 0x80, 0x02 });
        var p = DiffusersPipelineFolder.Open(root);
        var e = Assert.Throws<PickleWeightsException>(() => p.ResolveWeights("unet"));
        Assert.Contains("diffusion_pytorch_model.bin", e.Message);
        Assert.Contains("not loaded for safety", e.Message);
        Assert.Contains("safe_serialization=True", e.Message);
        Assert.Single(e.PickleFiles);
    }

    [Fact]
    public void ClearErrorsForBrokenFolders()
    {
        using var dir = new TempDir();
        Assert.Contains("does not exist", Assert.Throws<DiffusersFolderException>(() => DiffusersPipelineFolder.Open(dir["nope"])).Message);
        Directory.CreateDirectory(dir["empty"]);
        Assert.Contains("is not a diffusers pipeline folder: expected model_index.json, unet/, vae/",
            Assert.Throws<DiffusersFolderException>(() => DiffusersPipelineFolder.Open(dir["empty"])).Message);
        Directory.CreateDirectory(dir["bad"]);
        File.WriteAllText(Path.Combine(dir["bad"], "model_index.json"), "{\"_class_name\": \"X\",");
        Assert.Contains("is not valid JSON", Assert.Throws<DiffusersFolderException>(() => DiffusersPipelineFolder.Open(dir["bad"])).Message);
        File.WriteAllText(Path.Combine(dir["bad"], "model_index.json"), "{\"unet\": [\"diffusers\", \"UNet2DConditionModel\"]}");
        Assert.Contains("lacks \"_class_name\"", Assert.Throws<DiffusersFolderException>(() => DiffusersPipelineFolder.Open(dir["bad"])).Message);
        File.WriteAllText(Path.Combine(dir["bad"], "model_index.json"), "{\"_class_name\": \"X\", \"unet\": [\"diffusers\"]}");
        Assert.Contains("should be [library, class] or [null, null]", Assert.Throws<DiffusersFolderException>(() => DiffusersPipelineFolder.Open(dir["bad"])).Message);
        File.WriteAllText(Path.Combine(dir["bad"], "model_index.json"), "{\"_class_name\": \"X\", \"..\": [\"diffusers\", \"Y\"]}");
        Assert.Contains("is not a plain folder name", Assert.Throws<DiffusersFolderException>(() => DiffusersPipelineFolder.Open(dir["bad"])).Message);

        var root = MakePipeline(dir, "unet");
        var p = DiffusersPipelineFolder.Open(root);
        Assert.Contains("The \"vae\" folder (AutoencoderKL) is missing", Assert.Throws<DiffusersFolderException>(() => p.ResolveWeights("vae")).Message);
        Assert.Contains("has no config file", Assert.Throws<DiffusersFolderException>(() => p.ConfigPath("unet")).Message);
        Assert.Contains("has no weights: expected diffusion_pytorch_model.safetensors", Assert.Throws<DiffusersFolderException>(() => p.ResolveWeights("unet")).Message);
        File.WriteAllText(Path.Combine(root, "unet", "config.json"), "{oops");
        Assert.Contains("is not valid JSON", Assert.Throws<DiffusersFolderException>(() => p.LoadConfig("unet")).Message);
    }

    [Fact]
    public void WritesModelIndexKeepingUnknownKeys()
    {
        using var dir = new TempDir();
        var src = DiffusersPipelineFolder.Open(Fixtures.TinySd);
        var outDir = dir["out"];
        src.WriteModelIndex(outDir, new Dictionary<string, DiffusersComponent?>
        {
            ["scheduler"] = new("diffusers", "DDIMScheduler"), ["safety_checker"] = null, ["extra"] = new("diffusers", "Foo"),
        });
        var written = ConfigJson.Load(Path.Combine(outDir, "model_index.json"));
        Assert.False(written.Get("requires_safety_checker", true));
        Assert.Equal("StableDiffusionPipeline", written.Require<string>("_class_name"));
        Assert.Equal("0.32.2", written.Require<string>("_diffusers_version"));
        Assert.Equal(new[] { "diffusers", "DDIMScheduler" }, written.Require<string[]>("scheduler"));
        Assert.Equal(new[] { "transformers", "CLIPTokenizer" }, written.Require<string[]>("tokenizer"));
        Assert.Equal(new string?[] { null, null }, written.Require<string?[]>("safety_checker"));
        var keys = written.Root.Select(kv => kv.Key).ToList();
        Assert.Equal(keys.OrderBy(k => k, StringComparer.Ordinal), keys);   // sort_keys=True, as diffusers writes it
        Assert.Single(Directory.GetFiles(outDir));                           // no temp file left

        DiffusersPipelineFolder.WriteModelIndex(dir["fresh"], "StableDiffusionPipeline",
            new Dictionary<string, DiffusersComponent?> { ["unet"] = new("diffusers", "UNet2DConditionModel") });
        var fresh = ConfigJson.Load(Path.Combine(dir["fresh"], "model_index.json"));
        Assert.Equal(new[] { "_class_name", "_diffusers_version", "unet" }, fresh.Root.Select(kv => kv.Key));
    }

    [Fact]
    public void AddVariantMatchesDiffusers()
    {
        Assert.Equal("diffusion_pytorch_model.fp16.safetensors", DiffusersPipelineFolder.AddVariant("diffusion_pytorch_model.safetensors", "fp16"));
        Assert.Equal("model.safetensors.index.fp16.json", DiffusersPipelineFolder.AddVariant("model.safetensors.index.json", "fp16"));
        Assert.Equal("model.safetensors", DiffusersPipelineFolder.AddVariant("model.safetensors", null));
    }
}
