using System.Text.Json.Nodes;
using DreamBooth.Engine.IO;

namespace DreamBooth.Engine.Sources;

/// <summary>
/// What decides the UNet's LDM numbering: resolution levels, resnets per level, and which down/up levels carry
/// cross-attention transformers. Read from a diffusers config for export, or from the tensor names for import.
/// </summary>
public sealed record UnetLdmLayout(int Levels, int LayersPerBlock, bool[] DownHasAttention, bool[] UpHasAttention, bool MidHasAttention)
{
    public static UnetLdmLayout FromConfig(ConfigJson config)
    {
        var channels = config.Require<int[]>("block_out_channels");
        var down = config.Get("down_block_types", new[] { "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D" });
        var up = config.Get("up_block_types", new[] { "UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D" });
        var layers = config.GetIntOrList("layers_per_block", channels.Length) ?? Enumerable.Repeat(2, channels.Length).ToArray();
        if (layers.Distinct().Count() != 1) throw config.Unsupported("layers_per_block", "the LDM layout has one resnet count for all levels");
        if (down.Length != channels.Length || up.Length != channels.Length)
            throw config.Unsupported("down_block_types", "needs one down and one up block per entry of block_out_channels");
        foreach (var t in down.Concat(up))
            if (t is not ("CrossAttnDownBlock2D" or "DownBlock2D" or "CrossAttnUpBlock2D" or "UpBlock2D"))
                throw new ModelConfigException($"{config.Source}: block type '{t}' has no LDM equivalent.", "down_block_types");
        var mid = config.Get<string?>("mid_block_type", "UNetMidBlock2DCrossAttn");
        if (mid is not ("UNetMidBlock2DCrossAttn" or "UNetMidBlock2D"))
            throw config.Unsupported("mid_block_type", "the LDM layout has a resnet/attention/resnet middle block");
        if (config.Get<string?>("addition_embed_type", null) is not null || config.Get<string?>("class_embed_type", null) is not null)
            throw config.Unsupported(config.Has("addition_embed_type") && config.Root["addition_embed_type"] is not null ? "addition_embed_type" : "class_embed_type", "SD 1.x/2.x single files have no extra embeddings");
        return new UnetLdmLayout(channels.Length, layers[0],
            down.Select(t => t.StartsWith("CrossAttn", StringComparison.Ordinal)).ToArray(),
            up.Select(t => t.StartsWith("CrossAttn", StringComparison.Ordinal)).ToArray(),
            mid == "UNetMidBlock2DCrossAttn");
    }

    /// <summary>LDM: input_blocks.0 is conv_in; each level has LayersPerBlock blocks, then a downsampler except the last.</summary>
    public static UnetLdmLayout FromLdmKeys(IEnumerable<string> unetKeys)
    {
        var keys = unetKeys.ToHashSet(StringComparer.Ordinal);
        var inputIndices = BlockIndices(keys, "input_blocks.");
        if (!inputIndices.Contains(0)) throw new ModelSourceException("The UNet has no input_blocks.0 (conv_in); this is not an SD 1.x/2.x checkpoint.");
        var downsamplers = inputIndices.Where(i => keys.Contains($"input_blocks.{i}.0.op.weight")).OrderBy(i => i).ToList();
        int levels = downsamplers.Count + 1;
        // The first downsampler follows the first level's resnets: input_blocks.{LayersPerBlock + 1}.
        int layers = downsamplers.Count > 0 ? downsamplers[0] - 1 : inputIndices.Max();
        if (inputIndices.Max() != levels * layers + (levels - 1))
            throw new ModelSourceException($"The UNet's input_blocks ({inputIndices.Max()} after conv_in) do not form {levels} levels of equal depth.");
        var down = Enumerable.Range(0, levels).Select(i => keys.Any(k => k.StartsWith($"input_blocks.{1 + i * (layers + 1)}.1.", StringComparison.Ordinal))).ToArray();
        var up = Enumerable.Range(0, levels).Select(i => keys.Any(k => k.StartsWith($"output_blocks.{i * (layers + 1)}.1.", StringComparison.Ordinal)
                                                                         && !k.StartsWith($"output_blocks.{i * (layers + 1)}.1.conv.", StringComparison.Ordinal))).ToArray();
        bool mid = keys.Contains("middle_block.2.in_layers.0.weight");
        return new UnetLdmLayout(levels, layers, down, up, mid);
    }

    internal static SortedSet<int> BlockIndices(IEnumerable<string> keys, string prefix)
    {
        var set = new SortedSet<int>();
        foreach (var k in keys)
        {
            if (!k.StartsWith(prefix, StringComparison.Ordinal)) continue;
            var rest = k.AsSpan(prefix.Length);
            int dot = rest.IndexOf('.');
            if (dot > 0 && int.TryParse(rest[..dot], out var i)) set.Add(i);
        }
        return set;
    }
}
