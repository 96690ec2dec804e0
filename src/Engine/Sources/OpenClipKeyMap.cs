namespace DreamBooth.Engine.Sources;

/// <summary>
/// SD 2.x text encoder: OpenCLIP ViT-H text tower under <c>cond_stage_model.model.</c> ↔ transformers CLIPTextModel
/// (diffusers <c>convert_open_clip_checkpoint</c>): fused <c>attn.in_proj_*</c> = [q; k; v], <c>ln_1/ln_2</c>,
/// <c>mlp.c_fc/c_proj</c>, <c>token_embedding</c>, <c>positional_embedding</c> (a bare parameter), <c>ln_final</c>.
/// </summary>
public static class OpenClipKeyMap
{
    public const string LdmPrefix = "cond_stage_model.model.";

    /// <summary>
    /// SD 2.x conditions on the penultimate OpenCLIP layer, so diffusers' text encoder keeps 23 of 24 resblocks
    /// and ignores <c>resblocks.23</c>.
    /// </summary>
    public const int DroppedFinalResblock = 23;

    public static KeyMap Build(int layers)
    {
        var rules = new List<KeyRule>
        {
            new("text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
            new("text_model.embeddings.position_embedding.weight", "positional_embedding"),
            new("text_model.final_layer_norm.", "ln_final."),
        };
        for (int i = 0; i < layers; i++)
        {
            var d = $"text_model.encoder.layers.{i}.";
            var o = $"transformer.resblocks.{i}.";
            rules.Add(new(d + "layer_norm1.", o + "ln_1."));
            rules.Add(new(d + "layer_norm2.", o + "ln_2."));
            rules.Add(new(d + "mlp.fc1.", o + "mlp.c_fc."));
            rules.Add(new(d + "mlp.fc2.", o + "mlp.c_proj."));
            rules.Add(new(d + "self_attn.out_proj.", o + "attn.out_proj."));
            rules.Add(new(d + "self_attn.q_proj.", o + "attn.in_proj_", TensorTransform.QkvSliceQ));
            rules.Add(new(d + "self_attn.k_proj.", o + "attn.in_proj_", TensorTransform.QkvSliceK));
            rules.Add(new(d + "self_attn.v_proj.", o + "attn.in_proj_", TensorTransform.QkvSliceV));
        }
        return new KeyMap(LdmPrefix, rules);
    }
}
