using static TorchSharp.torch;

namespace DreamBooth.Engine.Training;

/// <summary>Hyperparameters and storage choices of <see cref="AdamW"/>. Defaults are PyTorch's AdamW (weight decay 1e-2).</summary>
public sealed record AdamWOptions
{
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double Eps { get; init; } = 1e-8;
    public double WeightDecay { get; init; } = 1e-2;

    /// <summary>
    /// Where the moments live and the update is computed; null = on each parameter's device. CPU here is
    /// <c>-OffloadOptimizerState</c>: grads are copied to the CPU (or given there, <see cref="GradientOffload"/>), the update runs there and the new value is copied
    /// back into the parameter.
    /// </summary>
    public Device? StateDevice { get; init; }

    /// <summary>
    /// With the state on another device than a float32 parameter (offload): keep a float32 copy of the parameter there
    /// too (pinned when the parameter is on a GPU), update it in place and copy it back asynchronously, as DeepSpeed's
    /// ZeRO-Offload keeps its master weights on the host. The parameter is then read from the device once, at its
    /// first update, instead of every step; the update is the same bit for bit. Costs the parameters' size in host
    /// memory. The optimizer must be the only writer of the parameters while it holds these copies
    /// (<see cref="AdamW.DropHostMasterWeights"/> after writing them otherwise).
    /// </summary>
    public bool HostMasterWeights { get; init; } = true;

    /// <summary>bitsandbytes AdamW8bit: block-wise 8-bit moments for tensors with at least <see cref="Min8BitSize"/> elements.</summary>
    public bool Use8Bit { get; init; }

    /// <summary>bitsandbytes' <c>min_8bit_size</c>: smaller tensors keep float32 moments.</summary>
    public long Min8BitSize { get; init; } = 4096;
}
