namespace DreamBooth.Engine.Lora;

/// <summary>Key layouts of a LoRA safetensors file.</summary>
public enum LoRAFormat
{
    /// <summary>diffusers/PEFT: <c>unet.{module}.lora_A.weight</c> / <c>lora_B.weight</c>, <c>text_encoder.{module}...</c>.</summary>
    Diffusers,
    /// <summary>kohya / A1111: <c>lora_unet_{flat module}.lora_down.weight</c> / <c>.lora_up.weight</c> / <c>.alpha</c>, <c>lora_te_...</c>.</summary>
    Kohya,
    /// <summary>diffusers before PEFT: <c>unet.{module}.lora.down.weight</c> or <c>{module}.processor.to_q_lora.down.weight</c> (read only).</summary>
    DiffusersLegacy,
}
