namespace DreamBooth.Engine;

/// <summary>
/// What the engine sets for the whole process before libtorch's first tensor: its huge-page switch (read at its first
/// allocation), its CUDA allocator settings (read when CUDA starts) and MKL's code path (read at MKL's first call).
/// The module applies them on import; the benchmark program does the same, so it measures what users get.
/// </summary>
public static class ProcessPolicies
{
    public static void Apply()
    {
        CpuAllocatorPolicy.Apply();
        CudaAllocatorPolicy.Apply();
        MklCodePathPolicy.Apply();
    }
}
