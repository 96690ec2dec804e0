using DreamBooth.Engine.Models.Autoencoders;
using DreamBooth.Engine.Pipelines;

namespace DreamBooth.Engine.Tests.Pipelines;

/// <summary>A CPU generation too large for the memory available is refused before its first step, not ended by the OOM killer.</summary>
public class GenerationMemoryTests : IClassFixture<PipelineParityTests.TinyPipeline>
{
    readonly StableDiffusionPipeline _pipe;
    public GenerationMemoryTests(PipelineParityTests.TinyPipeline fixture) => _pipe = fixture.Pipeline;

    static AutoencoderKLConfig Sd14Vae => AutoencoderKLConfig.Load(Path.Combine(Fixtures.Root, "configs", "sd-v1-4", "vae", "config.json"));

    [Fact]
    public void TheFloor_StaysUnderTheMeasuredSd14Peaks_AndGrowsWithPixelsAndBatch()
    {
        // generate-memory-sd14 (docs/benchmarks.md): fp32 peaks above the loaded model, in GiB.
        var measured = new[] { (512, 512, 1, 2.09), (768, 768, 1, 4.33), (1024, 1024, 1, 7.19), (1536, 1024, 1, 10.49), (512, 512, 2, 3.89) };
        foreach (var (w, h, batch, peak) in measured)
        {
            double floor = GenerationMemory.FloorBytes(Sd14Vae, w, h, batch, 4) / 1073741824.0;
            Assert.InRange(floor, 0.7 * peak, peak);   // under the peak, and not so far under that it checks nothing
        }
        // bf16 (seventeenth pass, after the load stopped holding a converted fp32 copy): 0.44 GB + 3.3 GB per megapixel,
        // so the constant weighs more at small sizes.
        foreach (var (w, h, peak) in new[] { (512, 512, 1.33), (1024, 1024, 4.20), (2048, 1024, 7.58) })
        {
            double floor = GenerationMemory.FloorBytes(Sd14Vae, w, h, 1, 2) / 1073741824.0;
            Assert.InRange(floor, 0.55 * peak, peak);
        }
        Assert.Equal(4 * GenerationMemory.FloorBytes(Sd14Vae, 512, 512, 1, 4), GenerationMemory.FloorBytes(Sd14Vae, 1024, 1024, 1, 4));
        Assert.Equal(2 * GenerationMemory.FloorBytes(Sd14Vae, 512, 512, 1, 2), GenerationMemory.FloorBytes(Sd14Vae, 512, 512, 1, 4));
    }

    [Fact]
    public void EnsureFits_RefusesOnlyWhatCannotFit_OnTheCpu()
    {
        long need = GenerationMemory.FloorBytes(Sd14Vae, 1024, 1024, 2, 4);
        GenerationMemory.EnsureFits(Sd14Vae, CPU, ScalarType.Float32, 1024, 1024, 2, need);
        GenerationMemory.EnsureFits(Sd14Vae, CPU, ScalarType.Float32, 1024, 1024, 2, null);             // the OS does not say
        GenerationMemory.EnsureFits(Sd14Vae, new Device("cuda"), ScalarType.Float16, 1024, 1024, 2, 1); // the card's own allocator reports
        var e = Assert.Throws<HostMemoryShortfallException>(() => GenerationMemory.EnsureFits(Sd14Vae, CPU, ScalarType.Float32, 1024, 1024, 2, need - 1));
        Assert.Equal(need, e.NeededBytes);
        Assert.Contains("-BatchSize 1", e.Message);
        Assert.Contains("smaller -Width and -Height", e.Message);
        Assert.Contains("-Precision bf16", e.Message);
        // bf16 and fp16 need half of fp32's floor: what fits there passes, less is refused (without suggesting bf16).
        GenerationMemory.EnsureFits(Sd14Vae, CPU, ScalarType.BFloat16, 1024, 1024, 2, need / 2);
        var half = Assert.Throws<HostMemoryShortfallException>(() => GenerationMemory.EnsureFits(Sd14Vae, CPU, ScalarType.Float16, 1024, 1024, 2, need / 2 - 1));
        Assert.Equal(need / 2, half.NeededBytes);
        Assert.DoesNotContain("-Precision bf16", half.Message);
    }

    [Fact]
    public void AGenerationBeyondAnyMachinesMemory_IsRefusedBeforeItsFirstStep()
    {
        var options = new TextToImageOptions { Prompts = new[] { "a photo of sks dog" }, Steps = 2, Width = 32768, Height = 32768 };
        var steps = 0;
        var e = Assert.Throws<HostMemoryShortfallException>(() => _pipe.Generate(options, new Progress<DenoiseProgress>(_ => steps++)));
        Assert.Contains("32768×32768", e.Message);
        Assert.Equal(0, steps);
        // From a picture too: refused before the picture is resized and encoded at that size.
        var fromImage = options with { InitImage = Path.Combine(Fixtures.Root, "img2img", "init.png"), Strength = 0.5 };
        Assert.Throws<HostMemoryShortfallException>(() => _pipe.Generate(fromImage));
    }
}
