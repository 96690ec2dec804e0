using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;
using DreamBooth.Engine.Models.Autoencoders;
using DreamBooth.Engine.Models.Unets;

namespace DreamBooth.Engine.Tests.Models;

/// <summary>FromPretrained → SavePretrained → FromPretrained keeps every tensor bit-identical and every config key.</summary>
public sealed class UNetVaeRoundTripTests : IDisposable
{
    readonly string dir = Path.Combine(Path.GetTempPath(), "unetvae-roundtrip-" + Guid.NewGuid().ToString("N"));
    public void Dispose() { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }

    static void AssertSameTensors(nn.Module a, nn.Module b)
    {
        var sa = a.state_dict(); var sb = b.state_dict();
        Assert.Equal(sa.Keys.OrderBy(k => k), sb.Keys.OrderBy(k => k));
        foreach (var (k, t) in sa) Assert.True(t.Equals(sb[k]), $"{k} changed in the round trip");
    }

    static void AssertSameConfig(string originalPath, string savedPath)
    {
        var original = ConfigJson.Load(originalPath).Root;
        var saved = ConfigJson.Load(savedPath).Root;
        Assert.Equal(original.Select(kv => kv.Key).OrderBy(k => k), saved.Select(kv => kv.Key).OrderBy(k => k));
        foreach (var (k, v) in original) Assert.True(JsonNode.DeepEquals(v, saved[k]), $"config key {k} changed");
    }

    [Fact]
    public void UNet_RoundTripIsExact()
    {
        string src = Path.Combine(Fixtures.TinySd, "unet");
        using var unet = UNet2DConditionModel.FromPretrained(src);
        unet.SavePretrained(dir);
        using var again = UNet2DConditionModel.FromPretrained(dir);
        AssertSameTensors(unet, again);
        AssertSameConfig(Path.Combine(src, "config.json"), Path.Combine(dir, "config.json"));
        using var file = SafetensorsFile.Open(Path.Combine(dir, "diffusion_pytorch_model.safetensors"));
        Assert.All(file.Keys, k => Assert.Equal(ScalarType.Float32, file[k].ScalarType));
    }

    [Fact]
    public void Vae_RoundTripIsExact()
    {
        string src = Path.Combine(Fixtures.TinySd, "vae");
        using var vae = AutoencoderKL.FromPretrained(src);
        vae.SavePretrained(dir);
        using var again = AutoencoderKL.FromPretrained(dir);
        AssertSameTensors(vae, again);
        AssertSameConfig(Path.Combine(src, "config.json"), Path.Combine(dir, "config.json"));
    }

    [Fact]
    public void FromPretrained_InBFloat16_KeepsDtypeOnSave()
    {
        using var unet = UNet2DConditionModel.FromPretrained(Path.Combine(Fixtures.TinySd, "unet"), ScalarType.BFloat16);
        Assert.All(unet.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        unet.SavePretrained(dir);
        using var file = SafetensorsFile.Open(Path.Combine(dir, "diffusion_pytorch_model.safetensors"));
        Assert.All(file.Keys, k => Assert.Equal(ScalarType.BFloat16, file[k].ScalarType));
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var r = Fixtures.Load("unet.safetensors");
        var output = unet.forward(r["sample"].to(ScalarType.BFloat16), r["t_500"], r["encoder_hidden_states"].to(ScalarType.BFloat16));
        Assert.Equal(ScalarType.BFloat16, output.dtype);
        Fixtures.AssertRelative(output, r["out_t_500"], 5e-2, "bf16 UNet vs fp32 reference");
    }
}
