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

    /// <summary>
    /// Every layer an adapter read from a file may sit on (its forward runs hooks): kohya's default SD 1.x LoRA also
    /// adapts the transformers' proj_in/proj_out (1×1 convs) and feed-forward, and CLIP's MLP.
    /// </summary>
    public static readonly IReadOnlyList<string> HookableUnetModules = new[] { "to_k", "to_q", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2" };
    public static readonly IReadOnlyList<string> HookableTextEncoderModules = new[] { "q_proj", "k_proj", "v_proj", "out_proj", "mlp.fc1", "mlp.fc2" };

    public static IReadOnlyList<string> HookableFor(string component) => component == TextEncoder ? HookableTextEncoderModules : HookableUnetModules;

    static bool EndsWithAny(string name, IReadOnlyList<string> suffixes)
        => suffixes.Any(s => name == s || name.EndsWith("." + s, StringComparison.Ordinal));

    /// <summary>Layers a file's adapters may attach to: hookable Linears and 1×1 Conv2ds, by dotted name.</summary>
    public static IReadOnlyList<(string Name, nn.Module<Tensor, Tensor> Layer, Tensor Weight)> FindHookable(nn.Module model, string component)
        => model.named_modules()
            .Where(m => EndsWithAny(m.name, HookableFor(component)))
            .Select(m => m.module switch
            {
                Linear l => (m.name, (nn.Module<Tensor, Tensor>)l, (Tensor)l.weight!),
                Conv2d c when c.weight!.shape[2] == 1 && c.weight.shape[3] == 1 => (m.name, c, c.weight!),
                _ => default,
            })
            .Where(x => x.Item1 is not null).ToList();

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
