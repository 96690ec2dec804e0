using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.TextEncoders;

/// <summary>transformers' <c>BaseModelOutputWithPooling</c> for the CLIP text tower. Disposing frees every tensor.</summary>
public sealed class ClipTextOutput : IDisposable
{
    /// <summary>[batch, seq, hidden], after final_layer_norm.</summary>
    public Tensor LastHiddenState { get; }
    /// <summary>[batch, hidden]: <see cref="LastHiddenState"/> at each sequence's EOS position.</summary>
    public Tensor PoolerOutput { get; }
    /// <summary>When requested: embeddings output, then each layer's output, all before final_layer_norm.</summary>
    public IReadOnlyList<Tensor>? HiddenStates { get; }

    public ClipTextOutput(Tensor lastHiddenState, Tensor poolerOutput, IReadOnlyList<Tensor>? hiddenStates)
    {
        LastHiddenState = lastHiddenState;
        PoolerOutput = poolerOutput;
        HiddenStates = hiddenStates;
    }

    public void Dispose()
    {
        LastHiddenState.Dispose();
        PoolerOutput.Dispose();
        if (HiddenStates is not null) foreach (var t in HiddenStates) t.Dispose();
    }
}
