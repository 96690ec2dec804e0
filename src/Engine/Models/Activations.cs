using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>diffusers' <c>get_activation(name)</c> (models/activations.py): the activation module for a config name.</summary>
public static class Activations
{
    public static nn.Module<Tensor, Tensor> Get(string name) => name.ToLowerInvariant() switch
    {
        "swish" or "silu" => nn.SiLU(),
        "mish" => nn.Mish(),
        "gelu" => nn.GELU(),
        "relu" => nn.ReLU(),
        _ => throw new ArgumentException($"Unsupported activation function '{name}' (diffusers knows swish, silu, mish, gelu, relu).", nameof(name)),
    };

    public static bool IsKnown(string name) => name.ToLowerInvariant() is "swish" or "silu" or "mish" or "gelu" or "relu";
}
