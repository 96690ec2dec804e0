using DreamBooth.Engine.IO;
using DreamBooth.Engine.Models.Autoencoders;
using DreamBooth.Engine.Models.TextEncoders;
using DreamBooth.Engine.Models.Unets;
using DreamBooth.Engine.Tests.IO;

namespace DreamBooth.Engine.Tests.Models;

/// <summary>
/// The models load their weights as diffusers' folders hold them (DiffusersPipelineFolder.ResolveWeightsIn): one
/// safetensors file or the shards an index lists, or a folder's only variant; pickle-only folders and folders of several
/// variants without default weights are refused with what to do.
/// </summary>
public class ComponentWeightsLoadingTests
{
    /// <summary>Copies a tiny-sd component and splits its weights file into two shards with a diffusers index.</summary>
    static string Sharded(TempDir dir, string component, string stem)
    {
        var target = dir[component];
        Directory.CreateDirectory(target);
        var source = Path.Combine(Fixtures.TinySd, component);
        foreach (var f in Directory.GetFiles(source).Where(f => !f.EndsWith(".safetensors", StringComparison.Ordinal)))
            File.Copy(f, Path.Combine(target, Path.GetFileName(f)));
        Dictionary<string, Tensor> all;
        using (var file = SafetensorsFile.Open(Path.Combine(source, stem + ".safetensors"))) all = file.ReadAll();
        var names = all.Keys.Order(StringComparer.Ordinal).ToList();
        var weightMap = new System.Text.Json.Nodes.JsonObject();
        for (int shard = 0; shard < 2; shard++)
        {
            var shardName = $"{stem}-0000{shard + 1}-of-00002.safetensors";
            var part = names.Where((_, i) => i % 2 == shard).ToDictionary(n => n, n => all[n]);
            SafetensorsWriter.Write(Path.Combine(target, shardName), part);
            foreach (var n in part.Keys) weightMap[n] = shardName;
        }
        File.WriteAllText(Path.Combine(target, stem + ".safetensors.index.json"),
            "{\"metadata\": {\"total_size\": 0}, \"weight_map\": " + weightMap.ToJsonString() + "}");
        return target;
    }

    static void AssertSameParameters(nn.Module a, nn.Module b)
    {
        var pb = b.state_dict();
        foreach (var (name, t) in a.state_dict()) Assert.True(t.Equals(pb[name]), name);
    }

    [Fact]
    public void ShardedUnetVaeAndTextEncoder_LoadAsTheSingleFilesDo()
    {
        using var dir = new TempDir();
        using (var one = UNet2DConditionModel.FromPretrained(Path.Combine(Fixtures.TinySd, "unet")))
        using (var sharded = UNet2DConditionModel.FromPretrained(Sharded(dir, "unet", "diffusion_pytorch_model")))
            AssertSameParameters(one, sharded);
        using (var one = AutoencoderKL.FromPretrained(Path.Combine(Fixtures.TinySd, "vae")))
        using (var sharded = AutoencoderKL.FromPretrained(Sharded(dir, "vae", "diffusion_pytorch_model")))
            AssertSameParameters(one, sharded);
        using (var one = ClipTextModel.FromPretrained(Path.Combine(Fixtures.TinySd, "text_encoder")))
        using (var sharded = ClipTextModel.FromPretrained(Sharded(dir, "text_encoder", "model")))
            AssertSameParameters(one, sharded);
    }

    [Fact]
    public void PickleOnlyAndAmbiguousVariantFolders_AreRefusedWithWhatToDo_AFolderOfOneVariantLoads()
    {
        using var dir = new TempDir();
        var te = dir["text_encoder"];
        Directory.CreateDirectory(te);
        File.Copy(Path.Combine(Fixtures.TinySd, "text_encoder", "config.json"), Path.Combine(te, "config.json"));
        File.WriteAllBytes(Path.Combine(te, "pytorch_model.bin"), new byte[] { 0x80, 0x02 });
        var pickle = Assert.Throws<PickleWeightsException>(() => ClipTextModel.FromPretrained(te));
        Assert.Contains("pytorch_model.bin", pickle.Message);

        var unet = dir["unet"];
        Directory.CreateDirectory(unet);
        File.Copy(Path.Combine(Fixtures.TinySd, "unet", "config.json"), Path.Combine(unet, "config.json"));
        File.Copy(Path.Combine(Fixtures.TinySd, "unet", "diffusion_pytorch_model.safetensors"), Path.Combine(unet, "diffusion_pytorch_model.fp16.safetensors"));
        // One variant and no default weights: that variant loads (as a download of a repository's fp16 files).
        using (var one = UNet2DConditionModel.FromPretrained(Path.Combine(Fixtures.TinySd, "unet")))
        using (var fp16Only = UNet2DConditionModel.FromPretrained(unet))
            AssertSameParameters(one, fp16Only);
        // Two variants and no default: which one is not clear.
        File.Copy(Path.Combine(unet, "diffusion_pytorch_model.fp16.safetensors"), Path.Combine(unet, "diffusion_pytorch_model.bf16.safetensors"));
        var variant = Assert.Throws<DiffusersFolderException>(() => UNet2DConditionModel.FromPretrained(unet));
        Assert.Contains("several weights variants (bf16, fp16)", variant.Message);
        Assert.Contains("rename", variant.Message);
    }
}
