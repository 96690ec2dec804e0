using System.Collections.Concurrent;
using static TorchSharp.torch;

namespace DreamBooth.Engine;

/// <summary>
/// What the engine's custom autograd functions (gradient checkpointing, fp32 arithmetic for low precision) share about
/// running inside libtorch's backward: an exception there would unwind through a native callback and kill the process,
/// so it is stashed and rethrown after <c>backward()</c>; and the gradient tensors a backward hands to libtorch are
/// copied by it only after the callback returns, so they are disposed later, here.
/// <c>Training.GradientCheckpoint.ThrowPendingError</c> is the call after each <c>loss.backward()</c>.
/// </summary>
internal static class AutogradCallbacks
{
    static Exception? s_pendingError;
    static readonly ConcurrentQueue<Tensor> s_handedBack = new();

    /// <summary>Keeps a gradient handed to libtorch until the next <see cref="ReleaseHandedBack"/>.</summary>
    public static void HandBack(Tensor gradient) => s_handedBack.Enqueue(gradient);

    public static void ReleaseHandedBack()
    {
        while (s_handedBack.TryDequeue(out var t)) t.Dispose();
    }

    /// <summary>Keeps the first exception raised inside a backward callback.</summary>
    public static void Stash(Exception e) => Interlocked.CompareExchange(ref s_pendingError, e, null);

    public static bool HasPending => Volatile.Read(ref s_pendingError) is not null;

    /// <summary>The stashed exception, if any, cleared.</summary>
    public static Exception? TakePending() => Interlocked.Exchange(ref s_pendingError, null);
}
