using DreamBooth.Engine.IO;
using DreamBooth.Engine.Models;
using DreamBooth.Engine.Models.Autoencoders;
using DreamBooth.Engine.Models.TextEncoders;
using DreamBooth.Engine.Models.Unets;
using TorchSharp.Modules;

namespace DreamBooth.Engine.Tests.Models;

/// <summary>Models that load their weights are built on the meta device and given storage only for the file's values.</summary>
public sealed class EmptyWeightsTests
{
    static string Component(string name) => Path.Combine(Fixtures.TinySd, name);

    /// <summary>Same names in the same order, dtypes, requires_grad and values, bit for bit.</summary>
    static void AssertSameParameters(nn.Module expected, nn.Module actual)
    {
        var e = expected.named_parameters().ToList();
        var a = actual.named_parameters().ToList();
        Assert.Equal(e.Select(p => p.name), a.Select(p => p.name));
        foreach (var ((name, pe), (_, pa)) in e.Zip(a))
        {
            Assert.Equal(DeviceType.CPU, pa.device_type);
            Assert.Equal(pe.dtype, pa.dtype);
            Assert.Equal(pe.requires_grad, pa.requires_grad);
            Assert.True(pe.shape.SequenceEqual(pa.shape) && pe.equal(pa).all().ToBoolean(), $"{name} differs");
        }
    }

    [Theory]
    [InlineData("unet")]
    [InlineData("vae")]
    [InlineData("text_encoder")]
    public void FromPretrained_LoadsTheSameAsARandomlyInitialisedModelFilledFromTheFile(string component)
    {
        string dir = Component(component), config = Path.Combine(dir, "config.json");
        using nn.Module expected = component switch
        {
            "unet" => UNet2DConditionModel.FromConfig(UNet2DConditionConfig.Load(config)),
            "vae" => AutoencoderKL.FromConfig(AutoencoderKLConfig.Load(config)),
            _ => ClipTextModel.FromConfig(ClipTextConfig.Load(config)),
        };
        StateDictLoader.Load(expected, Path.Combine(dir, component == "text_encoder" ? "model.safetensors" : "diffusion_pytorch_model.safetensors"));
        using nn.Module actual = component switch
        {
            "unet" => UNet2DConditionModel.FromPretrained(dir),
            "vae" => AutoencoderKL.FromPretrained(dir),
            _ => ClipTextModel.FromPretrained(dir),
        };
        AssertSameParameters(expected, actual);
        Assert.False(actual.training);
    }

    [Theory]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.BFloat16)]
    public void HalfPrecision_ParametersAreCreatedInTheDtype_AndHoldTheFileValuesRounded(ScalarType dtype)
    {
        using var fp32 = UNet2DConditionModel.FromPretrained(Component("unet"));
        using var half = UNet2DConditionModel.FromPretrained(Component("unet"), dtype);
        foreach (var ((name, p32), (_, ph)) in fp32.named_parameters().Zip(half.named_parameters()))
        {
            Assert.Equal(dtype, ph.dtype);
            Assert.True(p32.to(dtype).equal(ph).all().ToBoolean(), $"{name} differs");
        }
        // The module records where it lives, so a later move really moves.
        half.to(ScalarType.Float32);
        Assert.All(half.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
    }

    [Fact]
    public void InsideInit_LayersHaveMetaParameters_OutsideRealOnes()
    {
        using (EmptyWeights.Init())
        {
            using var inside = Layers.Linear(4, 3);
            Assert.Equal(DeviceType.META, inside.weight.device_type);
            using (EmptyWeights.Init()) Assert.Equal(DeviceType.META, EmptyWeights.Device!.type);
            Assert.NotNull(EmptyWeights.Device);   // nested scopes end one at a time
        }
        Assert.Null(EmptyWeights.Device);
        using var outside = Layers.GroupNorm(2, 4, 1e-6);
        Assert.Equal(DeviceType.CPU, outside.weight.device_type);
        Assert.True(outside.weight.eq(1).all().ToBoolean());
    }

    [Fact]
    public void Create_GivesEveryParameterStorageOnTheDeviceInTheDtype()
    {
        using var m = EmptyWeights.Create(() => new BasicTransformerBlock(8, 2, 4, crossAttentionDim: 6), ScalarType.BFloat16, torch.CPU);
        Assert.NotEmpty(m.parameters());
        Assert.All(m.named_parameters(), p =>
        {
            Assert.Equal(DeviceType.CPU, p.parameter.device_type);
            Assert.Equal(ScalarType.BFloat16, p.parameter.dtype);
            Assert.True(p.parameter.requires_grad);
        });
    }

    [Fact]
    public void AParameterNotCreatedThroughLayers_IsRefusedByName()
    {
        using var m = new MetaOnlyField();
        var ex = Assert.Throws<InvalidOperationException>(() => EmptyWeights.Materialize(m, torch.CPU, ScalarType.Float32));
        Assert.Contains("MetaOnlyField.scale", ex.Message);
    }

    sealed class MetaOnlyField : nn.Module
    {
#pragma warning disable CS0414, IDE0052   // registered by name
        readonly Parameter scale = new(torch.empty(3, device: torch.META));
#pragma warning restore CS0414, IDE0052
        public MetaOnlyField() : base(nameof(MetaOnlyField)) => RegisterComponents();
    }

    [Fact]
    public void AWeightsFileMissingATensor_IsRefusedNamingIt()
    {
        var dir = Directory.CreateTempSubdirectory("empty-weights-").FullName;
        try
        {
            File.Copy(Path.Combine(Component("unet"), "config.json"), Path.Combine(dir, "config.json"));
            using (var file = SafetensorsFile.Open(Path.Combine(Component("unet"), UNet2DConditionModel.WeightsName)))
            {
                var tensors = file.Keys.Where(k => k != "conv_out.bias").ToDictionary(k => k, k => file.Read(k));
                SafetensorsWriter.Write(Path.Combine(dir, UNet2DConditionModel.WeightsName), tensors, new Dictionary<string, string>());
                foreach (var t in tensors.Values) t.Dispose();
            }
            var ex = Assert.Throws<StateDictMismatchException>(() => UNet2DConditionModel.FromPretrained(dir));
            Assert.Equal(new[] { "conv_out.bias" }, ex.Missing);
        }
        finally { Directory.Delete(dir, true); }
    }
}
