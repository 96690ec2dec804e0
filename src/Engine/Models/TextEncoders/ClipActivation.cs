using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.TextEncoders;

/// <summary>The <c>hidden_act</c> values of transformers' ACT2FN that CLIP text encoders use.</summary>
public static class ClipActivation
{
    public static readonly IReadOnlyList<string> Names = new[] { "quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh" };

    public static bool IsKnown(string name) => Names.Contains(name);

    public static Func<Tensor, Tensor> Get(string name) => name switch
    {
        // OpenAI CLIP (SD 1.x): x * sigmoid(1.702 x)
        "quick_gelu" => x => x * nn.functional.sigmoid(1.702 * x),
        // OpenCLIP (SD 2.x): exact erf GELU
        "gelu" => x => nn.functional.gelu(x),
        // tanh approximation; transformers' gelu_new and PyTorch's gelu(approximate="tanh") are the same formula
        "gelu_new" or "gelu_pytorch_tanh" => x => 0.5 * x * (1.0 + (Math.Sqrt(2.0 / Math.PI) * (x + 0.044715 * x.pow(3))).tanh()),
        _ => throw new ArgumentException($"Unknown CLIP activation '{name}'; known: {string.Join(", ", Names)}.", nameof(name)),
    };
}
