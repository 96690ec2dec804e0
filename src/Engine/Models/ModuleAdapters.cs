using System.Runtime.CompilerServices;
using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// Additive adapters on layers (LoRA: y = layer(x) + Δ(x)), applied by <see cref="MixedPrecision.Forward"/>
/// after the layer's own result, whether that ran in fp32 or in the autocast dtype. A TorchSharp forward hook would be
/// skipped by the autocast path, which computes Linear/Conv2d functionally; this table is consulted on both paths.
/// </summary>
public static class ModuleAdapters
{
    static readonly ConditionalWeakTable<nn.Module<Tensor, Tensor>, List<Func<Tensor, Tensor>>> s_adapters = new();

    /// <summary>Adds <paramref name="delta"/> to <paramref name="layer"/>'s output until the returned handle is disposed.</summary>
    public static IDisposable Attach(nn.Module<Tensor, Tensor> layer, Func<Tensor, Tensor> delta)
    {
        var list = s_adapters.GetOrCreateValue(layer);
        lock (list) list.Add(delta);
        return new Handle(list, delta);
    }

    /// <summary>output + Σ Δ(input), each delta cast to the output's dtype.</summary>
    public static Tensor Apply(nn.Module<Tensor, Tensor> layer, Tensor input, Tensor output)
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
