using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Training;

/// <summary>
/// Captures and restores libtorch generator states as plain bytes, for training checkpoints
/// (the CPU state is mt19937 + Box–Muller cache, ~5 KB).
/// </summary>
public static class RngState
{
    /// <summary>The state of <paramref name="generator"/> (<c>Generator.get_state()</c>) as bytes.</summary>
    public static byte[] Capture(Generator generator)
    {
        ArgumentNullException.ThrowIfNull(generator);
        using var state = generator.get_state();
        return ToBytes(state);
    }

    /// <summary>Restores a state captured by <see cref="Capture(Generator)"/> (<c>Generator.set_state</c>).</summary>
    public static void Restore(Generator generator, byte[] state)
    {
        ArgumentNullException.ThrowIfNull(generator);
        ArgumentNullException.ThrowIfNull(state);
        using var t = torch.tensor(state, ScalarType.Byte);
        generator.set_state(t);
    }

    /// <summary>The default CPU generator's state (<c>torch.random.get_rng_state()</c>).</summary>
    public static byte[] CaptureDefault()
    {
        using var state = torch.random.get_rng_state();
        return ToBytes(state);
    }

    /// <summary>Restores the default CPU generator (<c>torch.random.set_rng_state</c>).</summary>
    public static void RestoreDefault(byte[] state)
    {
        ArgumentNullException.ThrowIfNull(state);
        using var t = torch.tensor(state, ScalarType.Byte);
        torch.random.set_rng_state(t);
    }

    static byte[] ToBytes(Tensor state)
    {
        using var scope = torch.NewDisposeScope();   // cpu() and contiguous() may each return a new handle; one per step leaked
        return state.cpu().contiguous().bytes.ToArray();
    }
}
