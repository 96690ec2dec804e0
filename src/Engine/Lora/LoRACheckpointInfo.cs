using System.Text.Json.Serialization;
using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Lora;

/// <summary>The "lora" entry of a LoRA run's dreambooth_checkpoint.json: what the adapter file holds.</summary>
public sealed class LoRACheckpointInfo
{
    [JsonPropertyName("weight_name")] public string WeightName { get; set; } = LoRAWeights.FileName;
    [JsonPropertyName("rank")] public int Rank { get; set; }
    [JsonPropertyName("alpha")] public double Alpha { get; set; }
    [JsonPropertyName("components")] public string[] Components { get; set; } = { LoRATargets.Unet };
    [JsonPropertyName("unet_target_modules")] public string[] UnetTargetModules { get; set; } = LoRATargets.UnetModules.ToArray();
    [JsonPropertyName("text_encoder_target_modules")] public string[]? TextEncoderTargetModules { get; set; }

    public static LoRACheckpointInfo For(DreamBoothOptions o) => new()
    {
        Rank = o.LoRARank,
        Alpha = o.EffectiveLoRAAlpha,
        Components = o.TrainTextEncoder ? new[] { LoRATargets.Unet, LoRATargets.TextEncoder } : new[] { LoRATargets.Unet },
        TextEncoderTargetModules = o.TrainTextEncoder ? LoRATargets.TextEncoderModules.ToArray() : null,
    };
}
