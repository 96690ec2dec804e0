using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Lora;

/// <summary>
/// One adapter on one model component (unet or text_encoder): a <see cref="LoRALayer"/> per target Linear, attached
/// as a forward hook (y = W x + b + scale · B(A x)). Base parameters keep their names and values, so the base weights
/// still load and save by diffusers names and detaching the adapter restores the model exactly. Several networks may
/// be attached to the same model (several adapters, each with its own multiplier).
/// </summary>
public sealed class LoRANetwork : IDisposable
{
    readonly List<(string Name, nn.Module<Tensor, Tensor> Target, LoRALayer Layer)> _layers = new();
    readonly List<IDisposable> _hooks = new();
    readonly Dictionary<LoRALayer, Tensor> _baseWeights = new();
    bool _disposed;

    /// <summary>unet or text_encoder: the key prefix in diffusers' file.</summary>
    public string Component { get; }
    public IReadOnlyList<(string Name, nn.Module<Tensor, Tensor> Target, LoRALayer Layer)> Layers => _layers;
    public bool IsAttached => _hooks.Count > 0;

    LoRANetwork(string component) => Component = component;

    /// <summary>New trainable adapters (PEFT init: A Kaiming-uniform, B zero) on every target of <paramref name="model"/>.</summary>
    public static LoRANetwork Create(nn.Module model, string component, int rank, double alpha, Generator? generator = null,
        IReadOnlyList<string>? targets = null)
    {
        var network = new LoRANetwork(component);
        var found = LoRATargets.Find(model, targets ?? LoRATargets.For(component));
        if (found.Count == 0) throw new InvalidOperationException($"The {component} has no Linear layers named {string.Join(", ", targets ?? LoRATargets.For(component))} to put LoRA adapters on.");
        foreach (var (name, linear) in found)
        {
            var w = linear.weight!;
            var layer = new LoRALayer(w.shape[1], w.shape[0], rank, alpha, ScalarType.Float32, w.device);
            layer.ResetParameters(generator);
            network._layers.Add((name, linear, layer));
            network._baseWeights[layer] = w;
        }
        network.Attach();
        return network;
    }

    /// <summary>
    /// Adapters read from a file onto <paramref name="model"/>. Module names match in dotted (diffusers) or flat
    /// (kohya) form; a name the model lacks (or a layer adapters cannot sit on), or a shape that does not fit, throws
    /// naming it. 1×1-conv adapters ([r, in, 1, 1]) are accepted on 1×1 convs and Linears.
    /// </summary>
    public static LoRANetwork FromWeights(nn.Module model, string component, IReadOnlyDictionary<string, LoRAModuleWeights> weights,
        double multiplier = 1.0, ScalarType? dtype = null)
    {
        var network = new LoRANetwork(component);
        var targets = LoRATargets.FindHookable(model, component)
            .GroupBy(m => LoRATargets.Flat(m.Name)).ToDictionary(g => g.Key, g => g.First());
        var missing = weights.Keys.Where(k => !targets.ContainsKey(LoRATargets.Flat(k))).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"The LoRA file has {missing.Count} {component} module(s) this model has no adaptable layer for, e.g. '{missing[0]}'. "
                + $"Adapters can sit on {string.Join(", ", LoRATargets.HookableFor(component))}; is the file for another model type (SD 1.x expected) or a LoCon/LyCORIS file?");
        try
        {
            foreach (var (key, wts) in weights)
            {
                var (name, target, w) = targets[LoRATargets.Flat(key)];
                var down = As2D(wts.Down); var up = As2D(wts.Up);
                if (down is null || up is null || down.shape[1] != w.shape[1] || up.shape[0] != w.shape[0] || up.shape[1] != down.shape[0])
                    throw new InvalidDataException($"LoRA weights for {component} '{name}' have shapes down [{string.Join(",", wts.Down.shape)}], up [{string.Join(",", wts.Up.shape)}]; the layer is [{string.Join(",", w.shape)}].");
                var layer = new LoRALayer(w.shape[1], w.shape[0], wts.Rank, wts.Alpha ?? wts.Rank, dtype ?? w.dtype, w.device)
                { Multiplier = multiplier, IsConv1x1 = w.dim() == 4 };
                using (torch.no_grad()) { layer.Down.copy_(down); layer.Up.copy_(up); }
                foreach (var p in layer.parameters()) p.requires_grad = false;
                network._layers.Add((name, target, layer));
                network._baseWeights[layer] = w;
            }
        }
        catch
        {
            network.Dispose();
            throw;
        }
        network.Attach();
        return network;
    }

    /// <summary>[r, in] / [out, r] as matrices: 2-D as is, 4-D only with a 1×1 kernel; null otherwise.</summary>
    static Tensor? As2D(Tensor t) => t.dim() switch
    {
        2 => t,
        4 when t.shape[2] == 1 && t.shape[3] == 1 => t.view(t.shape[0], t.shape[1]),
        _ => null,
    };

    void Attach()
    {
        foreach (var (_, target, layer) in _layers)
            _hooks.Add(Models.ModuleAdapters.Attach(target, layer.forward));
    }

    /// <summary>Removes the hooks: the model computes exactly as without adapters.</summary>
    public void Detach()
    {
        foreach (var h in _hooks) h.Dispose();
        _hooks.Clear();
    }

    /// <summary>Sets every layer's inference strength (diffusers' lora_scale / adapter weight).</summary>
    public double Multiplier
    {
        get => _layers.Count == 0 ? 1.0 : _layers[0].Layer.Multiplier;
        set { foreach (var l in _layers) l.Layer.Multiplier = value; }
    }

    /// <summary>Adapter parameters with their diffusers keys (<c>unet.{module}.lora_A.weight</c>), for the optimizer.</summary>
    public IEnumerable<(string Name, Parameter Param)> NamedParameters()
    {
        foreach (var (name, _, layer) in _layers)
        {
            yield return ($"{Component}.{name}.lora_A.weight", layer.Down);
            yield return ($"{Component}.{name}.lora_B.weight", layer.Up);
        }
    }

    /// <summary>Copies values into this network's adapters (resume): every module must be present with its shape.</summary>
    public void LoadWeights(IReadOnlyDictionary<string, LoRAModuleWeights> weights)
    {
        using var _ = torch.no_grad();
        foreach (var (name, _, layer) in _layers)
        {
            if (!weights.TryGetValue(name, out var w) && !weights.TryGetValue(LoRATargets.Flat(name), out w))
                throw new InvalidDataException($"The LoRA checkpoint has no weights for {Component} '{name}'.");
            if (!w.Down.shape.SequenceEqual(layer.Down.shape) || !w.Up.shape.SequenceEqual(layer.Up.shape))
                throw new InvalidDataException($"The LoRA checkpoint's {Component} '{name}' has rank {w.Rank}; this run uses rank {layer.Rank}.");
            layer.Down.copy_(w.Down);
            layer.Up.copy_(w.Up);
        }
    }

    /// <summary>
    /// Bakes the adapters into the base weights (W += scale · B·A, computed in fp32) and detaches them, like
    /// diffusers' fuse_lora followed by unload.
    /// </summary>
    public void Merge()
    {
        Detach();
        using var _ = torch.no_grad();
        foreach (var (_, target, layer) in _layers)
        {
            using var scope = torch.NewDisposeScope();
            var w = _baseWeights[layer];
            var merged = w.to(ScalarType.Float32) + layer.DeltaWeight().to(w.device).view(w.shape);
            w.copy_(merged.to(w.dtype));
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Detach();
        foreach (var l in _layers) l.Layer.Dispose();
        _layers.Clear();
    }
}
