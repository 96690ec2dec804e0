using DreamBooth.Engine.Sources;

namespace DreamBooth.Engine.Tests.Sources;

/// <summary>
/// The diffusers → LDM names checked against hand-written lists of keys as they appear in the original
/// SD 1.x (v1-5-pruned) and SD 2.x (v2-1_768-ema-pruned) single files.
/// </summary>
public class LdmKeyMapTests
{
    static readonly UnetLdmLayout Sd = new(4, 2,
        new[] { true, true, true, false }, new[] { false, true, true, true }, true);

    public static TheoryData<string, string> UnetKeys => new()
    {
        // time embedding, conv_in/out
        { "time_embedding.linear_1.weight", "model.diffusion_model.time_embed.0.weight" },
        { "time_embedding.linear_2.bias", "model.diffusion_model.time_embed.2.bias" },
        { "conv_in.weight", "model.diffusion_model.input_blocks.0.0.weight" },
        { "conv_norm_out.bias", "model.diffusion_model.out.0.bias" },
        { "conv_out.weight", "model.diffusion_model.out.2.weight" },
        // resnets
        { "down_blocks.0.resnets.0.norm1.weight", "model.diffusion_model.input_blocks.1.0.in_layers.0.weight" },
        { "down_blocks.0.resnets.1.conv1.weight", "model.diffusion_model.input_blocks.2.0.in_layers.2.weight" },
        { "down_blocks.1.resnets.0.conv_shortcut.weight", "model.diffusion_model.input_blocks.4.0.skip_connection.weight" },
        { "down_blocks.1.resnets.1.time_emb_proj.bias", "model.diffusion_model.input_blocks.5.0.emb_layers.1.bias" },
        { "down_blocks.3.resnets.1.conv2.weight", "model.diffusion_model.input_blocks.11.0.out_layers.3.weight" },
        { "down_blocks.2.resnets.0.norm2.weight", "model.diffusion_model.input_blocks.7.0.out_layers.0.weight" },
        { "up_blocks.0.resnets.2.conv1.weight", "model.diffusion_model.output_blocks.2.0.in_layers.2.weight" },
        { "up_blocks.1.resnets.2.conv_shortcut.weight", "model.diffusion_model.output_blocks.5.0.skip_connection.weight" },
        { "up_blocks.3.resnets.0.norm1.bias", "model.diffusion_model.output_blocks.9.0.in_layers.0.bias" },
        { "mid_block.resnets.0.conv1.weight", "model.diffusion_model.middle_block.0.in_layers.2.weight" },
        { "mid_block.resnets.1.norm2.bias", "model.diffusion_model.middle_block.2.out_layers.0.bias" },
        // transformers (attention)
        { "down_blocks.0.attentions.0.proj_in.weight", "model.diffusion_model.input_blocks.1.1.proj_in.weight" },
        { "down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k.weight", "model.diffusion_model.input_blocks.8.1.transformer_blocks.0.attn2.to_k.weight" },
        { "down_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj.weight", "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.ff.net.0.proj.weight" },
        { "mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.weight", "model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_out.0.weight" },
        { "up_blocks.1.attentions.0.norm.weight", "model.diffusion_model.output_blocks.3.1.norm.weight" },
        { "up_blocks.3.attentions.2.proj_out.bias", "model.diffusion_model.output_blocks.11.1.proj_out.bias" },
        { "up_blocks.2.attentions.1.transformer_blocks.0.norm3.weight", "model.diffusion_model.output_blocks.7.1.transformer_blocks.0.norm3.weight" },
        // down/upsamplers
        { "down_blocks.0.downsamplers.0.conv.weight", "model.diffusion_model.input_blocks.3.0.op.weight" },
        { "down_blocks.2.downsamplers.0.conv.bias", "model.diffusion_model.input_blocks.9.0.op.bias" },
        { "up_blocks.0.upsamplers.0.conv.weight", "model.diffusion_model.output_blocks.2.1.conv.weight" },
        { "up_blocks.1.upsamplers.0.conv.weight", "model.diffusion_model.output_blocks.5.2.conv.weight" },
        { "up_blocks.2.upsamplers.0.conv.bias", "model.diffusion_model.output_blocks.8.2.conv.bias" },
    };

    [Theory, MemberData(nameof(UnetKeys))]
    public void Unet_keys_match_the_ldm_layout_both_ways(string diffusers, string ldm)
    {
        var map = UnetKeyMap.Build(Sd);
        Assert.Equal(ldm, map.LdmKeyOf(diffusers));
        Assert.Equal(new[] { diffusers }, map.DiffusersKeysOf(ldm));
    }

    public static TheoryData<string, string> VaeKeys => new()
    {
        { "encoder.conv_in.weight", "first_stage_model.encoder.conv_in.weight" },
        { "encoder.conv_norm_out.weight", "first_stage_model.encoder.norm_out.weight" },
        { "encoder.down_blocks.0.resnets.1.conv2.bias", "first_stage_model.encoder.down.0.block.1.conv2.bias" },
        { "encoder.down_blocks.1.resnets.0.conv_shortcut.weight", "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight" },
        { "encoder.down_blocks.2.downsamplers.0.conv.weight", "first_stage_model.encoder.down.2.downsample.conv.weight" },
        { "encoder.mid_block.resnets.1.norm1.weight", "first_stage_model.encoder.mid.block_2.norm1.weight" },
        { "encoder.mid_block.attentions.0.group_norm.weight", "first_stage_model.encoder.mid.attn_1.norm.weight" },
        { "encoder.mid_block.attentions.0.to_q.weight", "first_stage_model.encoder.mid.attn_1.q.weight" },
        { "decoder.mid_block.attentions.0.to_k.bias", "first_stage_model.decoder.mid.attn_1.k.bias" },
        { "decoder.mid_block.attentions.0.to_v.weight", "first_stage_model.decoder.mid.attn_1.v.weight" },
        { "decoder.mid_block.attentions.0.to_out.0.weight", "first_stage_model.decoder.mid.attn_1.proj_out.weight" },
        { "decoder.mid_block.resnets.0.conv1.weight", "first_stage_model.decoder.mid.block_1.conv1.weight" },
        { "decoder.up_blocks.0.resnets.2.conv1.weight", "first_stage_model.decoder.up.3.block.2.conv1.weight" },
        { "decoder.up_blocks.0.upsamplers.0.conv.weight", "first_stage_model.decoder.up.3.upsample.conv.weight" },
        { "decoder.up_blocks.2.resnets.0.conv_shortcut.bias", "first_stage_model.decoder.up.1.block.0.nin_shortcut.bias" },
        { "decoder.up_blocks.3.resnets.1.norm2.weight", "first_stage_model.decoder.up.0.block.1.norm2.weight" },
        { "decoder.conv_norm_out.bias", "first_stage_model.decoder.norm_out.bias" },
        { "quant_conv.weight", "first_stage_model.quant_conv.weight" },
        { "post_quant_conv.bias", "first_stage_model.post_quant_conv.bias" },
    };

    [Theory, MemberData(nameof(VaeKeys))]
    public void Vae_keys_match_the_ldm_layout_both_ways(string diffusers, string ldm)
    {
        var map = VaeKeyMap.Build(4, 2);
        Assert.Equal(ldm, map.LdmKeyOf(diffusers));
        Assert.Equal(new[] { diffusers }, map.DiffusersKeysOf(ldm));
    }

    [Fact]
    public void Vae_has_no_downsampler_or_upsampler_on_the_last_level()
    {
        var map = VaeKeyMap.Build(4, 2);
        Assert.Null(map.LdmKeyOf("encoder.down_blocks.3.downsamplers.0.conv.weight"));
        Assert.Null(map.LdmKeyOf("decoder.up_blocks.3.upsamplers.0.conv.weight"));
        Assert.Empty(map.DiffusersKeysOf("first_stage_model.decoder.up.0.upsample.conv.weight"));
    }

    [Theory]
    [InlineData("text_model.embeddings.token_embedding.weight", "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight")]
    [InlineData("text_model.embeddings.position_embedding.weight", "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight")]
    [InlineData("text_model.encoder.layers.11.self_attn.q_proj.weight", "cond_stage_model.transformer.text_model.encoder.layers.11.self_attn.q_proj.weight")]
    [InlineData("text_model.encoder.layers.0.mlp.fc2.bias", "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc2.bias")]
    [InlineData("text_model.final_layer_norm.weight", "cond_stage_model.transformer.text_model.final_layer_norm.weight")]
    public void Clip_layer_keys_keep_transformers_names(string diffusers, string ldm)
    {
        var map = ClipKeyMap.Build();
        Assert.Equal(ldm, map.LdmKeyOf(diffusers));
        Assert.Equal(new[] { diffusers }, map.DiffusersKeysOf(ldm));
        Assert.Empty(map.DiffusersKeysOf("cond_stage_model.transformer.text_model.embeddings.position_ids"));
    }

    [Theory]
    [InlineData("text_model.embeddings.token_embedding.weight", "cond_stage_model.model.token_embedding.weight")]
    [InlineData("text_model.embeddings.position_embedding.weight", "cond_stage_model.model.positional_embedding")]
    [InlineData("text_model.final_layer_norm.bias", "cond_stage_model.model.ln_final.bias")]
    [InlineData("text_model.encoder.layers.0.layer_norm1.weight", "cond_stage_model.model.transformer.resblocks.0.ln_1.weight")]
    [InlineData("text_model.encoder.layers.22.layer_norm2.bias", "cond_stage_model.model.transformer.resblocks.22.ln_2.bias")]
    [InlineData("text_model.encoder.layers.5.mlp.fc1.weight", "cond_stage_model.model.transformer.resblocks.5.mlp.c_fc.weight")]
    [InlineData("text_model.encoder.layers.5.mlp.fc2.bias", "cond_stage_model.model.transformer.resblocks.5.mlp.c_proj.bias")]
    [InlineData("text_model.encoder.layers.7.self_attn.out_proj.weight", "cond_stage_model.model.transformer.resblocks.7.attn.out_proj.weight")]
    [InlineData("text_model.encoder.layers.7.self_attn.k_proj.weight", "cond_stage_model.model.transformer.resblocks.7.attn.in_proj_weight")]
    [InlineData("text_model.encoder.layers.7.self_attn.v_proj.bias", "cond_stage_model.model.transformer.resblocks.7.attn.in_proj_bias")]
    public void OpenClip_resblock_keys_match_sd2(string diffusers, string ldm)
    {
        var map = OpenClipKeyMap.Build(23);
        Assert.Equal(ldm, map.LdmKeyOf(diffusers));
        Assert.Contains(diffusers, map.DiffusersKeysOf(ldm));
        Assert.Null(map.LdmKeyOf("text_model.encoder.layers.23.mlp.fc1.weight"));
        Assert.Empty(map.DiffusersKeysOf("cond_stage_model.model.transformer.resblocks.23.mlp.c_fc.weight"));
        Assert.Empty(map.DiffusersKeysOf("cond_stage_model.model.text_projection"));
    }

    [Fact]
    public void OpenClip_in_proj_is_q_k_v_stacked()
    {
        var map = OpenClipKeyMap.Build(1);
        Assert.Equal(new[]
        {
            "text_model.encoder.layers.0.self_attn.q_proj.weight",
            "text_model.encoder.layers.0.self_attn.k_proj.weight",
            "text_model.encoder.layers.0.self_attn.v_proj.weight",
        }, map.DiffusersKeysOf("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"));

        using var scope = torch.NewDisposeScope();
        var q = torch.full(2, 3, 1f); var k = torch.full(2, 3, 2f); var v = torch.full(2, 3, 3f);
        var ldm = map.ToLdm(new Dictionary<string, Tensor>
        {
            ["text_model.encoder.layers.0.self_attn.q_proj.weight"] = q,
            ["text_model.encoder.layers.0.self_attn.k_proj.weight"] = k,
            ["text_model.encoder.layers.0.self_attn.v_proj.weight"] = v,
        });
        var fused = ldm["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"];
        Assert.Equal(new long[] { 6, 3 }, fused.shape);
        Assert.Equal(new[] { 1f, 1f, 2f, 2f, 3f, 3f }, fused[.., 0].data<float>().ToArray());
        var back = map.ToDiffusers(ldm, new List<string>());
        Assert.True(back["text_model.encoder.layers.0.self_attn.k_proj.weight"].Equals(k));
    }

    [Fact]
    public void Sd2_unet_uses_the_same_block_numbering()
    {
        // SD 2.x differs only inside the blocks (linear proj_in, 1024-wide attn2), not in the numbering.
        var map = UnetKeyMap.Build(Sd);
        Assert.Equal("model.diffusion_model.input_blocks.7.1.proj_in.weight", map.LdmKeyOf("down_blocks.2.attentions.0.proj_in.weight"));
        Assert.Equal("model.diffusion_model.output_blocks.10.1.transformer_blocks.0.attn2.to_v.weight",
            map.LdmKeyOf("up_blocks.3.attentions.1.transformer_blocks.0.attn2.to_v.weight"));
    }

    [Fact]
    public void Layout_is_recovered_from_sd1_ldm_names()
    {
        var map = UnetKeyMap.Build(Sd);
        var names = new List<string>();
        foreach (var rule in map.Rules) names.Add(rule.Ldm + "weight");
        // proj_in exists only where there is attention; a resnet always has out_layers.3.
        names.AddRange(map.Rules.Where(r => r.Diffusers.Contains(".attentions.")).Select(r => r.Ldm + "proj_in.weight"));
        var layout = UnetLdmLayout.FromLdmKeys(names);
        Assert.Equal(Sd.Levels, layout.Levels);
        Assert.Equal(Sd.LayersPerBlock, layout.LayersPerBlock);
        Assert.Equal(Sd.DownHasAttention, layout.DownHasAttention);
        Assert.Equal(Sd.UpHasAttention, layout.UpHasAttention);
        Assert.True(layout.MidHasAttention);
    }

    [Fact]
    public void Export_refuses_an_unknown_diffusers_key()
    {
        using var scope = torch.NewDisposeScope();
        var e = Assert.Throws<ModelSourceException>(() => UnetKeyMap.Build(Sd).ToLdm(new Dictionary<string, Tensor> { ["add_embedding.linear_1.weight"] = torch.zeros(1) }));
        Assert.Contains("add_embedding.linear_1.weight", e.Message);
    }
}
