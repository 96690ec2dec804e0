using System.Runtime.CompilerServices;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// Additive adapters on Linear layers (LoRA: y = W x + Δ(x)), applied by <see cref="Training.MixedPrecision.Forward"/>
/// after the layer's own product, whether that ran in fp32 or in the autocast dtype. A forward hook would be skipped by
/// the autocast path, which computes the product functionally; this table is consulted on both paths.
/// </summary>
public static class LinearAdapters
{
    static readonly ConditionalWeakTable<Linear, List<Func<Tensor, Tensor>>> s_adapters = new();

    /// <summary>Adds <paramref name="delta"/> to <paramref name="layer"/>'s output until the returned handle is disposed.</summary>
    public static IDisposable Attach(Linear layer, Func<Tensor, Tensor> delta)
    {
        var list = s_adapters.GetOrCreateValue(layer);
        lock (list) list.Add(delta);
        return new Handle(list, delta);
    }

    public static bool HasAdapters(Linear layer) => s_adapters.TryGetValue(layer, out var l) && l.Count > 0;

    /// <summary>output + Σ Δ(input), each delta cast to the output's dtype.</summary>
    public static Tensor Apply(Linear layer, Tensor input, Tensor output)
    {
        if (!s_adapters.TryGetValue(layer, out var list) || list.Count == 0) return output;
        Func<Tensor, Tensor>[] deltas;
        lock (list) deltas = list.ToArray();
        foreach (var d in deltas)
        {
            var delta = d(input);
            output = output + (delta.dtype == output.dtype ? delta : delta.to(output.dtype));
        }
        return output;
    }

    sealed class Handle : IDisposable
    {
        readonly List<Func<Tensor, Tensor>> _list; readonly Func<Tensor, Tensor> _delta;
        public Handle(List<Func<Tensor, Tensor>> list, Func<Tensor, Tensor> delta) { _list = list; _delta = delta; }
        public void Dispose() { lock (_list) _list.Remove(_delta); }
    }
}
