using DreamBooth.Engine.Pipelines;

namespace DreamBooth.Engine.Tests.Pipelines;

/// <summary>Get-DreamBoothModel's description: read from configs and headers of the tiny pipeline and its inpainting UNet.</summary>
public class ModelDescriptionTests
{
    [Fact]
    public void TheTinyPipeline_IsDescribedFromItsConfigsAndHeaders()
    {
        var d = ModelDescription.Describe(ModelSource.Resolve(Fixtures.TinySd));
        Assert.Equal("pipeline", d.Kind);
        Assert.Equal("cross-attention 32", d.Family);   // neither SD 1.x (768) nor 2.x (1024)
        Assert.Equal(64, d.Resolution);                  // sample_size 32 × VAE scale 2
        Assert.Equal("epsilon", d.PredictionType);
        Assert.False(d.Inpainting);
        Assert.Equal("fp32", d.Precision);
        Assert.Equal("PNDMScheduler", d.Scheduler);
        Assert.Equal(5, d.TextEncoderLayers);
        Assert.Equal(PipelineMemory.Count(ModelSource.Resolve(Fixtures.TinySd)).Unet, d.UnetParameters);
        Assert.True(d.SizeOnDisk > 4 * d.UnetParameters);   // fp32 weights of all three and the tokenizer
    }

    [Fact]
    public void A9ChannelUNet_IsAnInpaintingModel()
    {
        var source = ModelSource.Resolve(Fixtures.TinySd) with { UnetDirectory = Path.Combine(Fixtures.Root, "img2img", "inpaint", "unet-inpaint") };
        Assert.True(ModelDescription.Describe(source).Inpainting);
    }
}
