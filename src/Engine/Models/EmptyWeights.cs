using DreamBooth.Engine.IO;
using System.Reflection;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// accelerate's <c>init_empty_weights</c>, which diffusers' <c>from_pretrained</c> uses: a model about to load its
/// weights is built with its parameters on the meta device (shapes only, no storage, no random initialisation), then
/// given empty storage on the target device and dtype and filled from the file. Building the SD-1.4 UNet with
/// TorchSharp's random initialisation takes 5–11 s on two cores; this way loading costs only the copy, and a model
/// loaded for the GPU or in half precision never exists as an fp32 copy in host memory.
/// </summary>
public static class EmptyWeights
{
    static readonly AsyncLocal<int> depth = new();

    /// <summary>The device <see cref="Layers"/> create parameters on: meta inside <see cref="Init"/>, otherwise the default.</summary>
    public static Device? Device => depth.Value > 0 ? torch.META : null;

    /// <summary>Layers created (on this thread or async flow) until the result is disposed have meta parameters.</summary>
    public static IDisposable Init()
    {
        depth.Value++;
        return new Scope();
    }

    sealed class Scope : IDisposable
    {
        bool disposed;
        public void Dispose() { if (!disposed) { disposed = true; depth.Value--; } }
    }

    /// <summary>
    /// Builds a model inside <see cref="Init"/> and gives every parameter empty storage on <paramref name="device"/> in
    /// <paramref name="dtype"/>. Its values are undefined until loaded: the caller must fill every parameter (the strict
    /// <see cref="StateDictLoader"/> does, or throws for the missing ones).
    /// </summary>
    public static T Create<T>(Func<T> build, ScalarType dtype, Device? device) where T : nn.Module
    {
        T model;
        using (Init()) model = build();
        try { Materialize(model, device ?? torch.CPU, dtype); }
        catch { model.Dispose(); throw; }
        return model;
    }

    /// <summary>
    /// <see cref="Create"/>, then fills every parameter from <paramref name="weights"/> (strict names and shapes);
    /// <paramref name="checkUnexpected"/> may refuse the file's tensors the model does not have. In eval mode; disposed
    /// if anything fails.
    /// </summary>
    public static T Load<T>(Func<T> build, string weights, ScalarType dtype, Device? device,
        Action<IReadOnlyList<string>>? checkUnexpected = null) where T : nn.Module
    {
        using var file = SafetensorsFile.Open(weights);
        return Load(build, file, dtype, device, checkUnexpected);
    }

    /// <summary><see cref="Load{T}(Func{T}, string, ScalarType, Device?, Action{IReadOnlyList{string}}?)"/> from an open file or shard set.</summary>
    public static T Load<T>(Func<T> build, ISafetensorsSource weights, ScalarType dtype, Device? device,
        Action<IReadOnlyList<string>>? checkUnexpected = null) where T : nn.Module
    {
        var model = Create(build, dtype, device);
        try
        {
            var unexpected = StateDictLoader.Load(model, weights);
            checkUnexpected?.Invoke(unexpected);
            model.eval();
            return model;
        }
        catch { model.Dispose(); throw; }
    }

    /// <summary>Replaces each meta parameter of <paramref name="model"/> by an uninitialised one on the device, in the dtype.</summary>
    public static void Materialize(nn.Module model, Device device, ScalarType dtype)
    {
        // TorchSharp's modules() leaves the module itself out.
        foreach (var module in model.modules().Prepend(model))
        {
            foreach (var (name, p) in module.named_parameters(recurse: false).ToList())
            {
                if (p.device_type != DeviceType.META) continue;
                var setter = module.GetType().GetProperty(name, BindingFlags.Public | BindingFlags.Instance);
                if (setter is null || !setter.CanWrite || !setter.PropertyType.IsAssignableFrom(typeof(Parameter)))
                    throw new InvalidOperationException(
                        $"{module.GetType().Name}.{name} was created on the meta device but has no settable property to give it storage; create it through Layers.");
                var dt = torch.is_floating_point(p) ? dtype : p.dtype;
                setter.SetValue(module, new Parameter(torch.empty(p.shape, dt, device), p.requires_grad));
            }
        }
        // TorchSharp records each module's device when it moves it; this sets that record (nothing is copied).
        model.to(device, dtype);
    }
}
