using DreamBooth.Engine.IO;
using DreamBooth.Engine.Models;
using DreamBooth.Engine.Models.Autoencoders;

namespace DreamBooth.Engine.Tests.Models;

public sealed class VaeConfigTests
{
    [Fact]
    public void TinySdConfig_KeysEqualDiffusersFile()
    {
        using var vae = AutoencoderKL.FromConfig(AutoencoderKLConfig.Load(Path.Combine(Fixtures.TinySd, "vae", "config.json")));
        using var file = SafetensorsFile.Open(Path.Combine(Fixtures.TinySd, "vae", "diffusion_pytorch_model.safetensors"));
        Assert.Equal(file.Keys.OrderBy(k => k, StringComparer.Ordinal), vae.state_dict().Keys.OrderBy(k => k, StringComparer.Ordinal));
        Assert.Empty(StateDictLoader.Load(vae, file));
    }

    [Fact]
    public void NoQuantConvsAndNoMidAttention_DropThoseKeys()
    {
        var json = ConfigJson.Load(Path.Combine(Fixtures.TinySd, "vae", "config.json"));
        json.Root["use_quant_conv"] = false; json.Root["use_post_quant_conv"] = false; json.Root["mid_block_add_attention"] = false;
        using var vae = AutoencoderKL.FromConfig(new AutoencoderKLConfig(json));
        var keys = vae.state_dict().Keys.ToList();
        Assert.DoesNotContain(keys, k => k.StartsWith("quant_conv") || k.StartsWith("post_quant_conv") || k.Contains("mid_block.attentions"));
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        using var dist = vae.Encode(torch.randn(1, 3, 16, 16));
        Assert.Equal(new long[] { 1, 4, 8, 8 }, dist.Mean.shape);
        Assert.Equal(new long[] { 1, 3, 16, 16 }, vae.Decode(dist.Mean).shape);
    }

    [Theory]
    [InlineData("down_block_types", "[\"DownEncoderBlock2D\", \"AttnDownEncoderBlock2D\"]")]
    [InlineData("latents_mean", "[0.1, 0.2, 0.3, 0.4]")]
    [InlineData("act_fn", "\"softsign\"")]
    public void UnsupportedConfig_IsRefusedNamingKeyAndValue(string key, string value)
    {
        var json = ConfigJson.Load(Path.Combine(Fixtures.TinySd, "vae", "config.json"));
        json.Root[key] = System.Text.Json.Nodes.JsonNode.Parse(value);
        var e = Assert.Throws<ModelConfigException>(() => new AutoencoderKLConfig(json));
        Assert.Equal(key, e.Key);
        Assert.Contains(System.Text.Json.Nodes.JsonNode.Parse(value)!.ToJsonString(), e.Message);
    }
}
