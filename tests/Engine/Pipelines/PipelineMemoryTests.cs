using DreamBooth.Engine.Pipelines;

namespace DreamBooth.Engine.Tests.Pipelines;

/// <summary>Loading a pipeline onto the CPU is refused up front when its weights cannot fit in the memory available.</summary>
public class PipelineMemoryTests
{
    [Fact]
    public void ALoadAboveTheMemoryAvailable_IsRefusedBeforeAnythingLoads()
    {
        var source = ModelSource.Resolve(Fixtures.TinySd);
        long parameters = PipelineMemory.Count(source).Total;
        Assert.True(parameters > 0);
        PipelineMemory.EnsureFits(source, ScalarType.Float32, CPU, 4 * parameters);   // exactly enough
        PipelineMemory.EnsureFits(source, ScalarType.BFloat16, CPU, 2 * parameters);
        PipelineMemory.EnsureFits(source, ScalarType.Float32, CPU, null);            // the OS does not say
        PipelineMemory.EnsureFits(source, ScalarType.Float32, new Device("cuda"), 1);  // weights go to the card
        var e = Assert.Throws<HostMemoryShortfallException>(() => PipelineMemory.EnsureFits(source, ScalarType.Float32, CPU, 4 * parameters - 1));
        Assert.Equal(4 * parameters, e.NeededBytes);
        Assert.Contains("-Precision bf16 halves it", e.Message);
        Assert.False(OutOfMemory.Is(e));
    }
}
