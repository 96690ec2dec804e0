namespace DreamBooth.Engine.Sources;

/// <summary>
/// SD 1.x text encoder: the transformers CLIPTextModel state dict under <c>cond_stage_model.transformer.</c>,
/// names unchanged. (Old checkpoints lack the <c>text_model.</c> level; <see cref="LdmCheckpoint"/> adds it on import.)
/// </summary>
public static class ClipKeyMap
{
    public const string LdmPrefix = "cond_stage_model.transformer.";

    public static KeyMap Build() => new(LdmPrefix, new[]
    {
        new KeyRule("text_model.embeddings.token_embedding.", "text_model.embeddings.token_embedding."),
        new KeyRule("text_model.embeddings.position_embedding.", "text_model.embeddings.position_embedding."),
        new KeyRule("text_model.encoder.layers.", "text_model.encoder.layers."),
        new KeyRule("text_model.final_layer_norm.", "text_model.final_layer_norm."),
    });
}
