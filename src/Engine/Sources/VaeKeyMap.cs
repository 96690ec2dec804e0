namespace DreamBooth.Engine.Sources;

/// <summary>
/// AutoencoderKL ↔ LDM <c>first_stage_model</c> names. The decoder's LDM levels run the other way
/// (<c>decoder.up.{L-1-i}</c> is diffusers' <c>decoder.up_blocks.{i}</c>); mid attention is 1×1 convs in LDM.
/// </summary>
public static class VaeKeyMap
{
    public const string LdmPrefix = "first_stage_model.";

    public static KeyMap Build(int levels, int layersPerBlock, bool midAttention = true)
    {
        var rules = new List<KeyRule>
        {
            new("quant_conv.", "quant_conv."),
            new("post_quant_conv.", "post_quant_conv."),
        };
        foreach (var part in new[] { "encoder", "decoder" })
        {
            rules.Add(new($"{part}.conv_in.", $"{part}.conv_in."));
            rules.Add(new($"{part}.conv_out.", $"{part}.conv_out."));
            rules.Add(new($"{part}.conv_norm_out.", $"{part}.norm_out."));
            rules.AddRange(Resnet($"{part}.mid_block.resnets.0.", $"{part}.mid.block_1."));
            rules.AddRange(Resnet($"{part}.mid_block.resnets.1.", $"{part}.mid.block_2."));
            if (midAttention)
            {
                var a = $"{part}.mid_block.attentions.0.";
                var l = $"{part}.mid.attn_1.";
                rules.Add(new(a + "group_norm.", l + "norm."));
                rules.Add(new(a + "to_q.", l + "q.", TensorTransform.LinearToConv1x1));
                rules.Add(new(a + "to_k.", l + "k.", TensorTransform.LinearToConv1x1));
                rules.Add(new(a + "to_v.", l + "v.", TensorTransform.LinearToConv1x1));
                rules.Add(new(a + "to_out.0.", l + "proj_out.", TensorTransform.LinearToConv1x1));
            }
        }
        for (int i = 0; i < levels; i++)
        {
            for (int j = 0; j < layersPerBlock; j++)
                rules.AddRange(Resnet($"encoder.down_blocks.{i}.resnets.{j}.", $"encoder.down.{i}.block.{j}."));
            if (i < levels - 1) rules.Add(new($"encoder.down_blocks.{i}.downsamplers.0.conv.", $"encoder.down.{i}.downsample.conv."));

            int ldmLevel = levels - 1 - i;
            for (int j = 0; j <= layersPerBlock; j++)
                rules.AddRange(Resnet($"decoder.up_blocks.{i}.resnets.{j}.", $"decoder.up.{ldmLevel}.block.{j}."));
            if (i < levels - 1) rules.Add(new($"decoder.up_blocks.{i}.upsamplers.0.conv.", $"decoder.up.{ldmLevel}.upsample.conv."));
        }
        return new KeyMap(LdmPrefix, rules);
    }

    static IEnumerable<KeyRule> Resnet(string diffusers, string ldm) => new KeyRule[]
    {
        new(diffusers + "norm1.", ldm + "norm1."),
        new(diffusers + "conv1.", ldm + "conv1."),
        new(diffusers + "norm2.", ldm + "norm2."),
        new(diffusers + "conv2.", ldm + "conv2."),
        new(diffusers + "conv_shortcut.", ldm + "nin_shortcut."),
    };
}
