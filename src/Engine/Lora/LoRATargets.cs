using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Lora;

/// <summary>
/// Which Linear layers get adapters, as diffusers' train_dreambooth_lora.py targets them: UNet attention
/// <c>to_q, to_k, to_v, to_out.0</c>; CLIP text encoder <c>q_proj, k_proj, v_proj, out_proj</c> (PEFT suffix match).
/// </summary>
public static class LoRATargets
{
    public const string Unet = "unet";
    public const string TextEncoder = "text_encoder";

    public static readonly IReadOnlyList<string> UnetModules = new[] { "to_k", "to_q", "to_v", "to_out.0" };
    public static readonly IReadOnlyList<string> TextEncoderModules = new[] { "q_proj", "k_proj", "v_proj", "out_proj" };

    public static IReadOnlyList<string> For(string component) => component switch
    {
        Unet => UnetModules,
        TextEncoder => TextEncoderModules,
        _ => throw new ArgumentException($"No LoRA targets for component '{component}' (unet or text_encoder).", nameof(component)),
    };

    /// <summary>The model's Linear layers whose dotted names end in one of <paramref name="suffixes"/>, in module order.</summary>
    public static IReadOnlyList<(string Name, Linear Layer)> Find(nn.Module model, IReadOnlyList<string> suffixes)
        => model.named_modules()
            .Where(m => m.module is Linear && suffixes.Any(s => m.name == s || m.name.EndsWith("." + s, StringComparison.Ordinal)))
            .Select(m => (m.name, (Linear)m.module)).ToList();

    /// <summary>kohya's flat module name: dots become underscores (<c>..._attn1_to_out_0</c>).</summary>
    public static string Flat(string dottedName) => dottedName.Replace('.', '_');
}
