using static TorchSharp.torch;

namespace DreamBooth.Engine;

/// <summary>
/// What the engine's custom autograd functions (gradient checkpointing, fp32 arithmetic for low precision) share about
/// running inside libtorch's backward: an exception there would unwind through a native callback and kill the process,
/// so it is stashed and rethrown after <c>backward()</c>; and the gradient tensors a backward hands to libtorch are
/// copied by it only after the callback returns, so they are disposed later, here.
/// <para>One instance per thread that runs forwards (<see cref="Current"/>): a function captures it in its forward, so
/// its backward reports to that thread wherever libtorch runs the callback (the calling thread on the CPU, a device
/// thread on CUDA). Two trainings in one process (two runspaces, parallel tests) then never free each other's handed-back
/// gradients or take each other's exceptions.</para>
/// <c>Training.GradientCheckpoint.ThrowPendingError</c> is the call after each <c>loss.backward()</c>.
/// </summary>
internal sealed class AutogradCallbacks
{
    [ThreadStatic] static AutogradCallbacks? t_current;

    /// <summary>
    /// The calling thread's instance; inside a backward callback, the instance of the forward's thread (<see cref="Enter"/>),
    /// so a checkpoint's recompute reports where its outer forward does.
    /// </summary>
    public static AutogradCallbacks Current => t_current ??= new AutogradCallbacks();

    readonly object _gate = new();
    readonly List<(int Thread, Tensor Gradient)> _handedBack = new();
    Exception? _pending;

    /// <summary>Makes this the <see cref="Current"/> instance of the calling thread until disposed (for a backward callback).</summary>
    public IDisposable Enter()
    {
        var previous = t_current;
        t_current = this;
        return new DisposableAction(() => t_current = previous);
    }

    /// <summary>Keeps a gradient handed to libtorch until libtorch has taken it.</summary>
    public void HandBack(Tensor gradient)
    {
        lock (_gate) _handedBack.Add((Environment.CurrentManagedThreadId, gradient));
    }

    /// <summary>
    /// At the start of a backward callback: frees what earlier callbacks on this thread handed back (libtorch took it
    /// when they returned). Other threads' gradients may still be on their way to libtorch and stay.
    /// </summary>
    public void ReleaseEarlierOnThisThread() => Release(Environment.CurrentManagedThreadId);

    /// <summary>After <c>backward()</c> has returned: frees every handed-back gradient.</summary>
    public void ReleaseAll() => Release(null);

    void Release(int? thread)
    {
        var released = new List<Tensor>();
        lock (_gate)
            _handedBack.RemoveAll(h =>
            {
                if (thread is not null && h.Thread != thread) return false;
                released.Add(h.Gradient);
                return true;
            });
        foreach (var t in released) t.Dispose();
    }

    /// <summary>
    /// Called at the end of each checkpointed block's backward (after its recompute has given its parameters their
    /// gradients), on the thread libtorch runs it on; the trainer's <c>Training.GradientOffload</c> moves gradients off
    /// the device there. Set and cleared by the thread that runs the forwards.
    /// </summary>
    public Action? AfterCheckpointBackward { get; set; }

    /// <summary>Keeps the first exception raised inside a backward callback.</summary>
    public void Stash(Exception e) => Interlocked.CompareExchange(ref _pending, e, null);

    public bool HasPending => Volatile.Read(ref _pending) is not null;

    /// <summary>The stashed exception, if any, cleared.</summary>
    public Exception? TakePending() => Interlocked.Exchange(ref _pending, null);
}
