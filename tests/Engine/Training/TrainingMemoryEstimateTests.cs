using DreamBooth.Engine.Models.Autoencoders;
using DreamBooth.Engine.Models.TextEncoders;
using DreamBooth.Engine.Models.Unets;
using DreamBooth.Engine.Pipelines;
using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Training;

/// <summary>
/// Preflight's memory floor: the weights, gradients and optimizer state a run holds, from the safetensors headers,
/// against the memory available; a run above it is refused before anything loads, naming what needs less.
/// </summary>
public class TrainingMemoryEstimateTests
{
    static DreamBoothOptions Options => new()
    {
        Model = Fixtures.TinySd, InstanceDataDirectory = ".", InstancePrompt = "a photo of sks toy", OutputDirectory = ".",
    };

    static long Count(nn.Module m) => m.parameters().Sum(p => p.numel());

    [Fact]
    public void CountsTheModelsParameters_AndBytesPerParameterOfEachRecipe()
    {
        var source = PipelineMemory.Count(ModelSource.Resolve(Fixtures.TinySd));
        var e = TrainingMemoryEstimate.For(Options, source, onCpu: true);
        using (var unet = UNet2DConditionModel.FromPretrained(Path.Combine(Fixtures.TinySd, "unet"))) Assert.Equal(Count(unet), e.Parameters.Unet);
        using (var te = ClipTextModel.FromPretrained(Path.Combine(Fixtures.TinySd, "text_encoder"))) Assert.Equal(Count(te), e.Parameters.TextEncoder);
        using (var vae = AutoencoderKL.FromPretrained(Path.Combine(Fixtures.TinySd, "vae"))) Assert.Equal(Count(vae), e.Parameters.Vae);
        long u = e.Parameters.Unet, t = e.Parameters.TextEncoder, v = e.Parameters.Vae;

        // fp32 AdamW: weight, gradient and two moments (16 bytes) per trained parameter; frozen models 4 bytes; a frozen
        // text encoder is freed after encoding the prompts unless validation keeps it.
        Assert.Equal(16 * u + 4 * v, e.HostBytes);
        Assert.Equal(16 * u + 4 * (t + v), TrainingMemoryEstimate.For(Options with { ValidationPrompts = new[] { "x" } }, source, true).HostBytes);
        Assert.Equal(10 * u + 4 * v, TrainingMemoryEstimate.For(Options with { Use8BitAdam = true }, source, true).HostBytes);
        Assert.Equal(16 * (u + t) + 4 * v, TrainingMemoryEstimate.For(Options with { TrainTextEncoder = true }, source, true).HostBytes);
        Assert.Equal(4 * u + 4 * v, TrainingMemoryEstimate.For(Options with { LoRA = true }, source, true).HostBytes);
        Assert.Equal(4 * (u + t + v), TrainingMemoryEstimate.For(Options with { LoRA = true, TrainTextEncoder = true }, source, true).HostBytes);
        Assert.Equal(16 * u + 2 * v, TrainingMemoryEstimate.For(Options with { MixedPrecision = "bf16" }, source, true).HostBytes);
        // On a GPU the host holds only what offloading moves there.
        Assert.Equal(0, TrainingMemoryEstimate.For(Options, source, onCpu: false).HostBytes);
        Assert.Equal(16 * u, TrainingMemoryEstimate.For(Options with { OffloadOptimizerState = true }, source, false).HostBytes);
    }

    [Fact]
    public void ARunAboveTheMemoryAvailable_IsRefused_NamingWhatNeedsLess()
    {
        var source = PipelineMemory.Count(ModelSource.Resolve(Fixtures.TinySd));
        long need = TrainingMemoryEstimate.For(Options, source, onCpu: true).HostBytes;
        TrainingMemoryEstimate.EnsureFits(Options, source, true, need);      // exactly enough
        TrainingMemoryEstimate.EnsureFits(Options, source, true, null);      // the OS does not say: no check
        var e = Assert.Throws<HostMemoryShortfallException>(() => TrainingMemoryEstimate.EnsureFits(Options, source, true, need - 1));
        Assert.Equal(need, e.NeededBytes);
        Assert.Contains("Training on the CPU needs at least", e.Message);
        Assert.Contains("-LoRA", e.Message);
        Assert.Contains("-Use8BitAdam", e.Message);
        Assert.DoesNotContain("out of memory", e.Message, StringComparison.OrdinalIgnoreCase);   // not mistaken for an allocator failure
        Assert.False(OutOfMemory.Is(e));
    }

    [Fact]
    public void TheOsSaysWhatIsAvailable()
    {
        var available = HostMemory.AvailableBytes();
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsWindows()) { Assert.Null(available); return; }   // no check there
        Assert.NotNull(available);
        Assert.InRange(available!.Value, 1L << 20, 1L << 50);
    }
}
