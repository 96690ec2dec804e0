using System.Runtime.InteropServices;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Training;

/// <summary>
/// The gradient half of DeepSpeed ZeRO-Offload, which the guide's 8 GB recipe relies on: each gradient moves to a host
/// buffer as soon as backward has produced it and is released on the device, so the card never holds all of them
/// (3.4 GB in fp32 for SD-1.4's UNet). "As soon as" is the end of each checkpointed block's recomputed backward
/// (<see cref="CollectAfterCheckpointedBlocks"/>; whole-block checkpointing is on in the 8GB profile) and, for the
/// parameters outside those blocks, the end of backward (<see cref="Collect"/>). The loss scaler, gradient clipping and
/// the offloaded AdamW then read the host buffers (<see cref="Gradients"/>).
/// <para>The first gradient of a step is copied into the buffer, later ones (accumulation) are added to it, in the order
/// backward produced them: the same float32 sums as accumulating on the device, so the weights come out identical.</para>
/// </summary>
public sealed class GradientOffload : IDisposable
{
    readonly IReadOnlyList<(string Name, Parameter P)> _params;
    readonly Tensor?[] _host;
    readonly bool[] _filled;
    bool _keepZeros = true;

    public GradientOffload(IReadOnlyList<(string Name, Parameter P)> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        _params = parameters;
        _host = new Tensor?[parameters.Count];
        _filled = new bool[parameters.Count];
    }

    /// <summary>Largest number of bytes of gradients found on the parameters at one <see cref="Collect"/> (what the device held at once).</summary>
    public long PeakCollectedBytes { get; private set; }

    /// <summary>Bytes of the host buffers.</summary>
    public long HostBytes => _host.Sum(t => t is null ? 0 : t.numel() * t.ElementSize);

    /// <summary>
    /// Moves every gradient now held by a parameter into its host buffer and releases it on the device. Called by
    /// backward callbacks (a device thread on CUDA) and by the trainer after backward; never by two threads at once.
    /// </summary>
    public void Collect()
    {
        using var noGrad = torch.no_grad();
        long bytes = 0;
        for (int i = 0; i < _params.Count; i++)
        {
            var p = _params[i].P;
            using var g = p.grad;
            if (g is null) continue;
            bytes += g.numel() * g.ElementSize;
            var host = _host[i] ??= Allocate(g);
            if (_filled[i]) host.add_(g.to(host.device));
            else { host.copy_(g); _filled[i] = true; }
            p.grad = null;
        }
        PeakCollectedBytes = Math.Max(PeakCollectedBytes, bytes);
    }

    /// <summary>
    /// Until disposed, <see cref="Collect"/> runs at the end of each checkpointed block's backward of the forwards this
    /// thread runs (<see cref="AutogradCallbacks.AfterCheckpointBackward"/>).
    /// </summary>
    public IDisposable CollectAfterCheckpointedBlocks()
    {
        var callbacks = AutogradCallbacks.Current;
        var previous = callbacks.AfterCheckpointBackward;
        callbacks.AfterCheckpointBackward = Collect;
        return new DisposableAction(() => callbacks.AfterCheckpointBackward = previous);
    }

    /// <summary>
    /// The host gradient of each parameter, in parameter order: null where it has none this step (after a
    /// <see cref="Zero"/> that released it), zeros where it was zeroed and got none since, as <c>p.grad</c> would be.
    /// The tensors belong to this object: modify them in place, don't dispose them.
    /// </summary>
    public IReadOnlyList<Tensor?> Gradients
    {
        get
        {
            var result = new Tensor?[_host.Length];
            for (int i = 0; i < _host.Length; i++)
            {
                if (_host[i] is null) continue;
                if (!_filled[i] && _keepZeros) { _host[i]!.zero_(); _filled[i] = true; }
                result[i] = _filled[i] ? _host[i] : null;
            }
            return result;
        }
    }

    /// <summary>
    /// optimizer.zero_grad: the next step starts from no gradient (<paramref name="setToNone"/>) or from zeros. Either way
    /// the buffers stay allocated and are overwritten by the next step's first gradient, so no pass over them is needed.
    /// </summary>
    public void Zero(bool setToNone)
    {
        _keepZeros = !setToNone;
        Array.Clear(_filled);
    }

    static Tensor Allocate(Tensor like)
    {
        var host = torch.empty(like.shape, like.dtype, torch.CPU);
        if (like.device.type == DeviceType.CUDA)
        {
            // Page-locked memory: the device copies into it by DMA, at full bus speed.
            try { var pinned = host.pin_memory(); host.Dispose(); host = pinned; }
            catch (Exception e) when (e is ExternalException or InvalidOperationException) { }
        }
        return host.DetachFromDisposeScope();
    }

    public void Dispose()
    {
        for (int i = 0; i < _host.Length; i++) { _host[i]?.Dispose(); _host[i] = null; }
    }
}
