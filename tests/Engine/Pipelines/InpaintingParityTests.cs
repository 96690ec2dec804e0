using DreamBooth.Engine.Pipelines;

namespace DreamBooth.Engine.Tests.Pipelines;

/// <summary>
/// Inpainting against diffusers' StableDiffusionInpaintPipeline on the tiny fixture model (tests/fixtures/img2img/inpaint:
/// the toy photo and a mask, 'a photo of sks dog', CFG 7.5, 10 steps, seed 0): with the regular UNet, whose latents are
/// put back outside the mask after every step, and with a 9-input-channel inpainting UNet, which sees the mask.
/// </summary>
public class InpaintingParityTests : IClassFixture<PipelineParityTests.TinyPipeline>, IClassFixture<InpaintingParityTests.TinyInpaintingPipeline>
{
    static string Folder => Path.Combine(Fixtures.Root, "img2img", "inpaint");

    public sealed class TinyInpaintingPipeline : IDisposable
    {
        public StableDiffusionPipeline Pipeline { get; } =
            StableDiffusionPipeline.FromPretrained(Fixtures.TinySd, ScalarType.Float32, torch.CPU, unetOverride: Path.Combine(Folder, "unet-inpaint"));
        public void Dispose() => Pipeline.Dispose();
    }

    readonly StableDiffusionPipeline _regular, _inpainting;
    readonly Xunit.Abstractions.ITestOutputHelper _out;
    public InpaintingParityTests(PipelineParityTests.TinyPipeline regular, TinyInpaintingPipeline inpainting, Xunit.Abstractions.ITestOutputHelper output)
    {
        _regular = regular.Pipeline; _inpainting = inpainting.Pipeline; _out = output;
    }

    static Dictionary<string, Tensor> Reference() => Fixtures.Load("../img2img/inpaint/inpaint.safetensors");

    static TextToImageOptions Options(string scheduler, double? strength) => new()
    {
        Prompts = new[] { "a photo of sks dog" }, NegativePrompts = new[] { "" }, GuidanceScale = 7.5, Steps = 10, Seed = 0,
        Scheduler = scheduler, InitImage = Path.Combine(Fixtures.Root, "img2img", "init.png"), MaskImage = Path.Combine(Folder, "mask.png"),
        Strength = strength, Width = 96, Height = 80,
    };

    [Fact]
    public void TheMaskLoadsAsDiffusersMaskProcessorMakesIt()
    {
        using var scope = torch.NewDisposeScope();
        var mask = InitImage.LoadMask(Path.Combine(Folder, "mask.png"), 96, 80);
        Assert.True(mask.Equals(Reference()["mask"]), "the binarised mask differs from diffusers'");
        Assert.Equal(1.0, Options("DDIMScheduler", null).EffectiveStrength);   // diffusers' inpainting default
    }

    [Theory]
    [InlineData("regular", "DDIMScheduler", 1.0)]
    [InlineData("regular", "DDIMScheduler", 0.6)]
    [InlineData("regular", "EulerDiscreteScheduler", 0.6)]
    [InlineData("regular", "DPMSolverMultistepScheduler", 0.6)]
    [InlineData("inpainting", "DDIMScheduler", 1.0)]
    [InlineData("inpainting", "EulerDiscreteScheduler", 0.6)]
    public void ImageMatchesDiffusers(string kind, string scheduler, double strength)
    {
        using var scope = torch.NewDisposeScope();
        var pipe = kind == "regular" ? _regular : _inpainting;
        string key = $"{kind}_{scheduler}_s{(int)(strength * 100)}";
        var images = pipe.Generate(Options(scheduler, strength));
        Assert.EndsWith("mask.png", images[0].MaskImage);
        var image = images[0].Pixels.permute(1, 2, 0).unsqueeze(0);
        double err = Fixtures.MaxAbs(image, Reference()[key + ".image"]);
        _out.WriteLine($"{key}: image max abs {err:E3}");
        Assert.True(err <= 1e-3, $"{key}: image max abs {err:E3} > 1e-3");
    }

    [Theory]
    [InlineData("regular", null)]
    [InlineData("inpainting", null)]
    [InlineData("regular", 0.6)]
    public void TwoImagesInOneBatch_EqualTwoBatchesOfOne(string kind, double? strength)
    {
        using var scope = torch.NewDisposeScope();
        var pipe = kind == "regular" ? _regular : _inpainting;
        var o = Options("DDIMScheduler", strength) with { ImagesPerPrompt = 2, Steps = 4 };
        var together = pipe.Generate(o with { BatchSize = 2 });
        var apart = pipe.Generate(o with { BatchSize = 1 });
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal(apart[i].Seed, together[i].Seed);
            double err = Fixtures.MaxAbs(together[i].Pixels, apart[i].Pixels);
            Assert.True(err <= 1e-5, $"{kind} image {i}: batched and unbatched differ by {err:E3}");
        }
        Assert.True(Fixtures.MaxAbs(together[0].Pixels, together[1].Pixels) > 1e-3);   // each image its own seed
    }

    [Fact]
    public void AnInpaintingModel_NeedsAnImageAndAMask()
    {
        var e = Assert.Throws<ArgumentException>(() => _inpainting.Generate(new TextToImageOptions { Prompts = new[] { "x" }, Steps = 2, Width = 64, Height = 64 }));
        Assert.Contains("inpainting model", e.Message);
        Assert.Throws<ArgumentException>(() => _regular.Generate(Options("DDIMScheduler", 0.6) with { InitImage = null }));
    }
}
