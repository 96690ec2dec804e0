using DreamBooth.Engine.Pipelines;

namespace DreamBooth.Engine.Tests.Pipelines;

/// <summary>
/// The text-to-image pipeline against diffusers' StableDiffusionPipeline on the tiny fixture model
/// (prompt 'a photo of sks dog', negative '', CFG 7.5, 5 steps, 64×64): with the stored latents and with seed 0.
/// </summary>
public class PipelineParityTests : IClassFixture<PipelineParityTests.TinyPipeline>
{
    public sealed class TinyPipeline : IDisposable
    {
        public StableDiffusionPipeline Pipeline { get; } = StableDiffusionPipeline.FromPretrained(Fixtures.TinySd, ScalarType.Float32, torch.CPU);
        public void Dispose() => Pipeline.Dispose();
    }

    readonly StableDiffusionPipeline _pipe;
    readonly Xunit.Abstractions.ITestOutputHelper _out;
    public PipelineParityTests(TinyPipeline fixture, Xunit.Abstractions.ITestOutputHelper output) { _pipe = fixture.Pipeline; _out = output; }

    static TextToImageOptions Options(string scheduler, Tensor? latents = null) => new()
    {
        Prompts = new[] { "a photo of sks dog" }, NegativePrompts = new[] { "" }, GuidanceScale = 7.5, Steps = 5,
        Width = 64, Height = 64, Seed = 0, Scheduler = scheduler, Latents = latents,
    };

    [Theory]
    [InlineData("PNDMScheduler")]
    [InlineData("DDIMScheduler")]
    [InlineData("DPMSolverMultistepScheduler")]
    public void GivenLatentsImageMatchesDiffusers(string scheduler)
    {
        using var scope = torch.NewDisposeScope();
        var r = Fixtures.Load($"pipeline/{scheduler}.safetensors");
        var images = _pipe.Generate(Options(scheduler, r["given_latents"]));
        var image = images[0].Pixels.permute(1, 2, 0).unsqueeze(0);   // [1,H,W,3] like output_type='np'
        double err = Fixtures.MaxAbs(image, r["given_image"]);
        _out.WriteLine($"{scheduler} given latents: max abs {err:E3}");
        Assert.True(err <= 1e-3, $"{scheduler} given latents: max abs {err:E3} > 1e-3");
    }

    [Theory]
    [InlineData("PNDMScheduler")]
    [InlineData("DDIMScheduler")]
    [InlineData("DPMSolverMultistepScheduler")]
    public void SeedZeroImageMatchesDiffusers(string scheduler)
    {
        using var scope = torch.NewDisposeScope();
        var r = Fixtures.Load($"pipeline/{scheduler}.safetensors");
        var images = _pipe.Generate(Options(scheduler));
        var image = images[0].Pixels.permute(1, 2, 0).unsqueeze(0);
        double err = Fixtures.MaxAbs(image, r["gen_image"]);
        _out.WriteLine($"{scheduler} seed 0: max abs {err:E3}");
        Assert.True(err <= 1e-3, $"{scheduler} seed 0: max abs {err:E3} > 1e-3");
    }

    [Theory]
    [InlineData("DDIMScheduler", 0.7)]
    [InlineData("DDIMScheduler", 0.0)]
    [InlineData("PNDMScheduler", 0.7)]
    public void GuidanceRescaleMatchesDiffusers(string scheduler, double rescale)
    {
        using var scope = torch.NewDisposeScope();
        var r = Fixtures.Load($"../guidance-rescale/guidance_rescale.safetensors");
        var images = _pipe.Generate(Options(scheduler) with { GuidanceRescale = rescale });
        double err = Fixtures.MaxAbs(images[0].Pixels.permute(1, 2, 0).unsqueeze(0), r[$"{scheduler}_r{(int)(rescale * 100)}.image"]);
        _out.WriteLine($"{scheduler} guidance_rescale {rescale}: max abs {err:E3}");
        Assert.True(err <= 1e-3, $"{scheduler} guidance_rescale {rescale}: max abs {err:E3} > 1e-3");
    }

    [Fact]
    public void SeededInitialLatentsEqualPyTorchGenerator()
    {
        using var scope = torch.NewDisposeScope();
        var r = Fixtures.Load("pipeline/PNDMScheduler.safetensors");
        using var g = new torch.Generator(0);
        var latents = torch.randn(new long[] { 1, 4, 32, 32 }, generator: g);
        Assert.True(latents.Equals(r["gen_initial_latents"]), "randn(1,4,32,32, Generator(0)) differs from PyTorch's");
    }

    [Fact]
    public void PromptEmbeddingsMatchDiffusers()
    {
        using var scope = torch.NewDisposeScope();
        var r = Fixtures.Load("pipeline/PNDMScheduler.safetensors");
        Fixtures.AssertRelative(_pipe.EncodePrompts(new[] { "a photo of sks dog" }), r["prompt_embeds"], 1e-4, "prompt_embeds");
        Fixtures.AssertRelative(_pipe.EncodePrompts(new[] { "" }), r["negative_prompt_embeds"], 1e-4, "negative_prompt_embeds");
    }

    [Fact]
    public void SameSeedGivesSameImageAndEachImageHasItsOwnSeed()
    {
        using var scope = torch.NewDisposeScope();
        var opts = Options("DDIMScheduler") with { ImagesPerPrompt = 2, Seed = 10 };
        var a = _pipe.Generate(opts);
        var b = _pipe.Generate(opts with { ImagesPerPrompt = 1, Seed = 11 });
        Assert.Equal(new long[] { 10, 11 }, a.Select(i => i.Seed).ToArray());
        Assert.True(a[1].Pixels.Equals(b[0].Pixels), "image 2 of a seed-10 batch must equal a single seed-11 image");
        Assert.False(a[0].Pixels.Equals(a[1].Pixels));
    }

    [Fact]
    public void RejectsSizesThatAreNotMultiplesOf8()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => _pipe.Generate(Options("DDIMScheduler") with { Width = 60 }));
        Assert.Contains("multiple of 8", e.Message);
    }
}
