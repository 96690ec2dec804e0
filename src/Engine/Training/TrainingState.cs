using System.Text.Json.Serialization;
using TorchSharp;

namespace DreamBooth.Engine.Training;

/// <summary>
/// Where a run stands, written as dreambooth_checkpoint.json in every checkpoint: step, epoch, position in the
/// epoch's data order, every RNG state, the smoothed loss and the full settings with the base model.
/// </summary>
public sealed class TrainingState
{
    [JsonPropertyName("format_version")] public int FormatVersion { get; set; } = 1;
    [JsonPropertyName("base_model")] public string BaseModel { get; set; } = "";
    [JsonPropertyName("global_step")] public int GlobalStep { get; set; }
    [JsonPropertyName("epoch")] public int Epoch { get; set; }
    /// <summary>Micro-batches of the current epoch already consumed.</summary>
    [JsonPropertyName("batch_in_epoch")] public int BatchInEpoch { get; set; }
    [JsonPropertyName("epoch_order")] public int[]? EpochOrder { get; set; }
    [JsonPropertyName("generator_state")] public byte[]? GeneratorState { get; set; }
    [JsonPropertyName("data_random_state")] public string? DataRandomState { get; set; }
    /// <summary>fp16 dynamic loss scale and growth tracker after the last step (null unless -MixedPrecision fp16).</summary>
    [JsonPropertyName("loss_scaler")] public LossScalerState? LossScaler { get; set; }
    [JsonPropertyName("smoothed_loss")] public double SmoothedLoss { get; set; } = double.NaN;
    [JsonPropertyName("trained_components")] public string[] TrainedComponents { get; set; } = { "unet" };
    [JsonPropertyName("engine_version")] public string EngineVersion { get; set; } = typeof(TrainingState).Assembly.GetName().Version?.ToString(3) ?? "";
    [JsonPropertyName("saved_at")] public DateTime SavedAt { get; set; }
    /// <summary>The loss of the step the checkpoint was saved after, and the learning rate it used (for listing; absent before 0.1.0's Get-DreamBoothCheckpoint).</summary>
    [JsonPropertyName("loss")] public double? Loss { get; set; }
    [JsonPropertyName("learning_rate")] public double? LearningRate { get; set; }
    [JsonPropertyName("options")] public DreamBoothOptions Options { get; set; } = null!;
    /// <summary>LoRA runs (issue 8): the adapter settings; the checkpoint holds pytorch_lora_weights.safetensors.</summary>
    [JsonPropertyName("lora")] public Lora.LoRACheckpointInfo? LoRA { get; set; }

    public static TrainingState New(DreamBoothOptions options, string baseModel) => new()
    {
        Options = options with { Model = baseModel },
        BaseModel = baseModel,
        TrainedComponents = options.TrainTextEncoder ? new[] { "unet", "text_encoder" } : new[] { "unet" },
        LoRA = options.LoRA ? Lora.LoRACheckpointInfo.For(options) : null,
    };

    /// <summary>A copy with the generators' current states, taken after each optimizer step.</summary>
    public TrainingState Snapshot(torch.Generator generator, Pcg32 random)
    {
        var copy = (TrainingState)MemberwiseClone();
        copy.EpochOrder = EpochOrder?.ToArray();
        copy.GeneratorState = RngState.Capture(generator);
        copy.DataRandomState = random.Serialize();
        return copy;
    }
}
