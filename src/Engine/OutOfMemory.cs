namespace DreamBooth.Engine;

/// <summary>
/// Whether an exception says that memory ran out: libtorch's CUDA caching allocator ("CUDA out of memory"), its CPU
/// allocator ("can't allocate memory"), cuBLAS/cuDNN workspaces, or .NET's own. TorchSharp hands libtorch's errors over as
/// <c>ExternalException</c>s carrying libtorch's message, and the engine may wrap them (a checkpointed recompute's failure
/// comes back inside an InvalidOperationException), so the whole chain is searched.
/// </summary>
public static class OutOfMemory
{
    static readonly string[] Signs =
    {
        "out of memory",                 // "CUDA out of memory. Tried to allocate …", "CUDA error: out of memory"
        "can't allocate memory",         // c10 DefaultCPUAllocator
        "CUBLAS_STATUS_ALLOC_FAILED",
        "CUDNN_STATUS_ALLOC_FAILED",
        "cudaErrorMemoryAllocation",
    };

    public static bool Is(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
        {
            if (Says(e)) return true;
            if (e is AggregateException agg && agg.InnerExceptions.Any(Is)) return true;
        }
        return false;
    }

    static bool Says(Exception e) => e is OutOfMemoryException || Signs.Any(s => e.Message.Contains(s, StringComparison.OrdinalIgnoreCase));

    /// <summary>The first line of the innermost message that says so (libtorch's own words, without its C++ stack).</summary>
    public static string Describe(Exception e)
    {
        string? found = null;
        for (Exception? x = e; x is not null; x = x.InnerException)
            if (Says(x)) found = x.Message;
        var text = (found ?? e.Message).Trim();
        int nl = text.IndexOfAny(['\r', '\n']);
        return nl < 0 ? text : text[..nl].Trim();
    }
}
