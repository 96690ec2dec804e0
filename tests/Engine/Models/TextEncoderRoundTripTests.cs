using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;
using DreamBooth.Engine.Models;
using DreamBooth.Engine.Models.TextEncoders;

namespace DreamBooth.Engine.Tests.Models.TextEncoders;

public sealed class TextEncoderRoundTripTests
{
    static string TinyDir => Path.Combine(Fixtures.TinySd, "text_encoder");

    [Fact]
    public void SaveThenReloadKeepsKeysTensorsAndConfig()
    {
        var dir = Directory.CreateTempSubdirectory("db-te-").FullName;
        try
        {
            using (var model = ClipTextModel.FromPretrained(TinyDir)) model.SavePretrained(dir);
            using (var reloaded = ClipTextModel.FromPretrained(dir))
                Assert.Equal(5, reloaded.Config.NumHiddenLayers);

            using var original = SafetensorsFile.Open(Path.Combine(TinyDir, "model.safetensors"));
            using var saved = SafetensorsFile.Open(Path.Combine(dir, "model.safetensors"));
            Assert.Equal(original.Keys.OrderBy(k => k, StringComparer.Ordinal), saved.Keys.OrderBy(k => k, StringComparer.Ordinal));
            Assert.Equal("pt", saved.Metadata["format"]);
            foreach (var key in original.Keys)
            {
                Assert.Equal(original[key].DType, saved[key].DType);
                using var a = original.Read(key);
                using var b = saved.Read(key);
                Assert.True(a.Equals(b), $"{key} changed in the round trip");
            }

            var before = JsonNode.Parse(File.ReadAllText(Path.Combine(TinyDir, "config.json")))!.AsObject();
            var after = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!.AsObject();
            Assert.Equal(before.Select(p => p.Key).OrderBy(k => k), after.Select(p => p.Key).OrderBy(k => k));
            Assert.True(JsonNode.DeepEquals(before, after), "config.json values changed in the round trip");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void StateDictKeysAreExactlyTheFileKeys()
    {
        using var model = ClipTextModel.FromPretrained(TinyDir);
        using var file = SafetensorsFile.Open(Path.Combine(TinyDir, "model.safetensors"));
        var keys = model.state_dict().Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();
        Assert.Equal(file.Keys.OrderBy(k => k, StringComparer.Ordinal), keys);
        Assert.Contains("text_model.encoder.layers.4.self_attn.out_proj.bias", keys);
        Assert.Contains("text_model.final_layer_norm.weight", keys);
        Assert.DoesNotContain("text_model.embeddings.position_ids", keys);
    }

    [Fact]
    public void LegacyPositionIdsEntryIsAccepted()
    {
        // Older transformers saved the position_ids buffer; loading must tolerate it.
        var dir = Directory.CreateTempSubdirectory("db-te-").FullName;
        try
        {
            File.Copy(Path.Combine(TinyDir, "config.json"), Path.Combine(dir, "config.json"));
            using var file = SafetensorsFile.Open(Path.Combine(TinyDir, "model.safetensors"));
            var tensors = file.ReadAll();
            tensors["text_model.embeddings.position_ids"] = arange(77L).unsqueeze(0);
            SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
            foreach (var t in tensors.Values) t.Dispose();
            using var model = ClipTextModel.FromPretrained(dir);
            Assert.False(model.training);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void UnknownExtraTensorIsRefusedByName()
    {
        var dir = Directory.CreateTempSubdirectory("db-te-").FullName;
        try
        {
            File.Copy(Path.Combine(TinyDir, "config.json"), Path.Combine(dir, "config.json"));
            using var file = SafetensorsFile.Open(Path.Combine(TinyDir, "model.safetensors"));
            var tensors = file.ReadAll();
            tensors["text_projection.weight"] = zeros(32, 32);
            SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
            foreach (var t in tensors.Values) t.Dispose();
            var e = Assert.Throws<InvalidDataException>(() => ClipTextModel.FromPretrained(dir));
            Assert.Contains("text_projection.weight", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void FromPretrainedConvertsDtype()
    {
        using var model = ClipTextModel.FromPretrained(TinyDir, ScalarType.BFloat16);
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        using var _ = no_grad();
        using var ids = tensor(new long[] { 49406, 320, 1125, 49407 }).unsqueeze(0);
        using var embeds = model.EncodeForDiffusion(ids);
        Assert.Equal(ScalarType.BFloat16, embeds.dtype);
        Assert.False(embeds.isnan().any().item<bool>());
    }
}
