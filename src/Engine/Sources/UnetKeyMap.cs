namespace DreamBooth.Engine.Sources;

/// <summary>
/// UNet2DConditionModel ↔ LDM <c>openaimodel.UNetModel</c> names (diffusers <c>convert_ldm_unet_checkpoint</c> and
/// <c>convert_diffusers_to_original_stable_diffusion.py</c>), for any number of levels and resnets per level.
/// </summary>
public static class UnetKeyMap
{
    public const string LdmPrefix = "model.diffusion_model.";

    public static KeyMap Build(UnetLdmLayout layout)
    {
        var rules = new List<KeyRule>
        {
            new("time_embedding.linear_1.", "time_embed.0."),
            new("time_embedding.linear_2.", "time_embed.2."),
            new("conv_in.", "input_blocks.0.0."),
            new("conv_norm_out.", "out.0."),
            new("conv_out.", "out.2."),
        };
        int n = layout.LayersPerBlock;
        for (int i = 0; i < layout.Levels; i++)
        {
            for (int j = 0; j < n; j++)
            {
                int block = 1 + i * (n + 1) + j;
                rules.AddRange(Resnet($"down_blocks.{i}.resnets.{j}.", $"input_blocks.{block}.0."));
                if (layout.DownHasAttention[i]) rules.Add(new($"down_blocks.{i}.attentions.{j}.", $"input_blocks.{block}.1."));
            }
            if (i < layout.Levels - 1)
                rules.Add(new($"down_blocks.{i}.downsamplers.0.conv.", $"input_blocks.{1 + i * (n + 1) + n}.0.op."));
        }

        rules.AddRange(Resnet("mid_block.resnets.0.", "middle_block.0."));
        if (layout.MidHasAttention) rules.Add(new("mid_block.attentions.0.", "middle_block.1."));
        rules.AddRange(Resnet("mid_block.resnets.1.", layout.MidHasAttention ? "middle_block.2." : "middle_block.1."));

        for (int i = 0; i < layout.Levels; i++)
        {
            for (int j = 0; j <= n; j++)
            {
                int block = i * (n + 1) + j;
                rules.AddRange(Resnet($"up_blocks.{i}.resnets.{j}.", $"output_blocks.{block}.0."));
                if (layout.UpHasAttention[i]) rules.Add(new($"up_blocks.{i}.attentions.{j}.", $"output_blocks.{block}.1."));
            }
            if (i < layout.Levels - 1)
                rules.Add(new($"up_blocks.{i}.upsamplers.0.conv.", $"output_blocks.{i * (n + 1) + n}.{(layout.UpHasAttention[i] ? 2 : 1)}.conv."));
        }
        return new KeyMap(LdmPrefix, rules);
    }

    /// <summary>ResnetBlock2D ↔ LDM ResBlock (in_layers = GroupNorm, SiLU, conv; out_layers = GroupNorm, SiLU, Dropout, conv).</summary>
    static IEnumerable<KeyRule> Resnet(string diffusers, string ldm) => new KeyRule[]
    {
        new(diffusers + "norm1.", ldm + "in_layers.0."),
        new(diffusers + "conv1.", ldm + "in_layers.2."),
        new(diffusers + "time_emb_proj.", ldm + "emb_layers.1."),
        new(diffusers + "norm2.", ldm + "out_layers.0."),
        new(diffusers + "conv2.", ldm + "out_layers.3."),
        new(diffusers + "conv_shortcut.", ldm + "skip_connection."),
    };
}
