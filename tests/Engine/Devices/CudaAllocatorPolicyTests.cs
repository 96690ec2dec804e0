using DreamBooth.Engine;
using Xunit;

namespace DreamBooth.Engine.Tests.Devices;

public class CudaAllocatorPolicyTests
{
    /// <summary>libtorch reads PYTORCH_CUDA_ALLOC_CONF from the C environment when CUDA starts; Apply must put it there.</summary>
    [Fact]
    public void OnLinux_AsksForExpandableSegmentsInTheCEnvironment_UnlessTheUserChose()
    {
        string? before = CudaAllocatorPolicy.NativeValue;
        CudaAllocatorPolicy.Apply();
        CudaAllocatorPolicy.Apply();   // once is enough; twice changes nothing
        if (!OperatingSystem.IsLinux())
        {
            Assert.Null(CudaAllocatorPolicy.NativeValue);
            Assert.StartsWith("libtorch default", CudaAllocatorPolicy.Description);
        }
        else if (string.Equals(Environment.GetEnvironmentVariable("DREAMBOOTH_CUDA_ALLOCATOR"), "default", StringComparison.OrdinalIgnoreCase))
            Assert.Equal(before, CudaAllocatorPolicy.NativeValue);
        else if (before is not null && before != CudaAllocatorPolicy.ExpandableSegments)
        {
            Assert.Equal(before, CudaAllocatorPolicy.NativeValue);   // the user's setting wins
            Assert.EndsWith("(set by the environment)", CudaAllocatorPolicy.Description);
        }
        else
        {
            Assert.Equal(CudaAllocatorPolicy.ExpandableSegments, CudaAllocatorPolicy.NativeValue);
            Assert.Contains("expandable_segments:True", CudaAllocatorPolicy.Description);
        }
    }
}
