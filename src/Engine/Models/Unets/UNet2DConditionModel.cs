using DreamBooth.Engine.IO;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.Unets;

/// <summary>
/// diffusers <c>UNet2DConditionModel</c> (models/unets/unet_2d_condition.py) for SD 1.x/2.x configs: predicts noise
/// (or v) from a latent, a timestep and text encoder states. Parameter names equal diffusers' state-dict keys.
/// </summary>
public sealed class UNet2DConditionModel : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    public const string WeightsName = "diffusion_pytorch_model.safetensors";
    public const string ConfigName = "config.json";

    readonly Conv2d conv_in;
    public readonly Timesteps time_proj;
    public readonly TimestepEmbedding time_embedding;
    readonly ModuleList<UNetDownBlock> down_blocks = new();
    readonly UNetMidBlock2DCrossAttn mid_block;
    readonly ModuleList<UNetUpBlock> up_blocks = new();
    readonly GroupNorm conv_norm_out;
    readonly nn.Module<Tensor, Tensor> conv_act;
    readonly Conv2d conv_out;

    readonly GradientCheckpointing checkpointing = new();
    readonly int numUpsamplers;

    public UNet2DConditionConfig Config { get; }

    /// <summary>Recompute resnets and transformer blocks in backward (needs <see cref="CheckpointRunner"/>); only while grad is enabled.</summary>
    public bool GradientCheckpointing { get => checkpointing.Enabled; set => checkpointing.Enabled = value; }

    /// <summary>
    /// With <see cref="GradientCheckpointing"/>: recompute only the norm + activation pairs of resnets and the norm + GEGLU
    /// of transformer blocks, keeping convolution, attention and projection outputs (see Models.GradientCheckpointing).
    /// </summary>
    public bool SelectiveCheckpointing { get => checkpointing.Selective; set => checkpointing.Selective = value; }

    /// <summary>The checkpoint function: runs fn(inputs) keeping only the inputs for backward.</summary>
    public Func<Func<Tensor[], Tensor[]>, Tensor[], Tensor[]>? CheckpointRunner { get => checkpointing.Runner; set => checkpointing.Runner = value; }

    public UNet2DConditionModel(UNet2DConditionConfig config) : base(nameof(UNet2DConditionModel))
    {
        Config = config;
        var c = config;
        int n = c.BlockOutChannels.Length;
        int[] channels = c.BlockOutChannels;

        conv_in = Layers.Conv2d(c.InChannels, channels[0], c.ConvInKernel, 1, (c.ConvInKernel - 1) / 2);
        time_proj = new Timesteps(channels[0], c.FlipSinToCos, c.FreqShift);
        time_embedding = new TimestepEmbedding(channels[0], c.TimeEmbedDim, c.ActFn);

        int output = channels[0];
        for (int i = 0; i < n; i++)
        {
            int input = output;
            output = channels[i];
            bool isFinal = i == n - 1;
            down_blocks.Add(c.DownBlockTypes[i] == "CrossAttnDownBlock2D"
                ? new CrossAttnDownBlock2D(input, output, c.TimeEmbedDim, c.LayersPerBlock[i], c.TransformerLayersPerBlock[i],
                    c.NormEps, c.ActFn, c.NormNumGroups, c.CrossAttentionDim[i], c.NumAttentionHeads[i], !isFinal,
                    c.DownsamplePadding, c.UseLinearProjection, c.OnlyCrossAttention[i], c.UpcastAttention, c.Dropout, checkpointing)
                : new DownBlock2D(input, output, c.TimeEmbedDim, c.LayersPerBlock[i], c.NormEps, c.ActFn, c.NormNumGroups,
                    !isFinal, c.DownsamplePadding, c.Dropout, checkpointing));
        }

        mid_block = new UNetMidBlock2DCrossAttn(channels[^1], c.TimeEmbedDim, c.TransformerLayersPerBlock[^1], c.NormEps, c.ActFn,
            c.MidBlockScaleFactor, c.CrossAttentionDim[^1], c.NumAttentionHeads[^1], c.NormNumGroups, c.UseLinearProjection,
            c.UpcastAttention, c.Dropout, checkpointing);

        // up blocks mirror the down blocks: every per-block list is read reversed
        var rChannels = Enumerable.Reverse(channels).ToArray();
        var rHeads = Enumerable.Reverse(c.NumAttentionHeads).ToArray();
        var rLayers = Enumerable.Reverse(c.LayersPerBlock).ToArray();
        var rCross = Enumerable.Reverse(c.CrossAttentionDim).ToArray();
        var rTransformerLayers = Enumerable.Reverse(c.TransformerLayersPerBlock).ToArray();
        var rOnlyCross = Enumerable.Reverse(c.OnlyCrossAttention).ToArray();
        output = rChannels[0];
        for (int i = 0; i < n; i++)
        {
            bool isFinal = i == n - 1;
            int prevOutput = output;
            output = rChannels[i];
            int input = rChannels[Math.Min(i + 1, n - 1)];
            if (!isFinal) numUpsamplers++;
            up_blocks.Add(c.UpBlockTypes[i] == "CrossAttnUpBlock2D"
                ? new CrossAttnUpBlock2D(input, prevOutput, output, c.TimeEmbedDim, rLayers[i] + 1, rTransformerLayers[i], c.NormEps,
                    c.ActFn, c.NormNumGroups, rCross[i], rHeads[i], !isFinal, c.UseLinearProjection, rOnlyCross[i],
                    c.UpcastAttention, c.Dropout, checkpointing)
                : new UpBlock2D(input, prevOutput, output, c.TimeEmbedDim, rLayers[i] + 1, c.NormEps, c.ActFn, c.NormNumGroups,
                    !isFinal, c.Dropout, checkpointing));
        }

        conv_norm_out = Layers.GroupNorm(c.NormNumGroups, channels[0], c.NormEps);
        conv_act = Activations.Get(c.ActFn);
        conv_out = Layers.Conv2d(channels[0], c.OutChannels, c.ConvOutKernel, 1, (c.ConvOutKernel - 1) / 2);
        RegisterComponents();
    }

    /// <summary>A randomly initialised model (PyTorch default init; norms weight 1, bias 0).</summary>
    public static UNet2DConditionModel FromConfig(UNet2DConditionConfig config, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        var model = new UNet2DConditionModel(config);
        if (dtype != ScalarType.Float32 || device is not null) model.to(device ?? torch.CPU, dtype);
        model.eval();
        return model;
    }

    /// <summary>
    /// Loads a diffusers <c>unet/</c> folder (config.json + diffusion_pytorch_model.safetensors, or its shards);
    /// strict names and shapes.
    /// </summary>
    public static UNet2DConditionModel FromPretrained(string componentDir, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        var config = UNet2DConditionConfig.Load(Path.Combine(componentDir, ConfigName));
        using var weights = DiffusersPipelineFolder.OpenWeights(componentDir);
        return EmptyWeights.Load(() => new UNet2DConditionModel(config), weights, dtype, device);
    }

    /// <summary>Writes config.json (all original keys) and diffusion_pytorch_model.safetensors (current dtype, or <paramref name="dtype"/>).</summary>
    public void SavePretrained(string componentDir, ScalarType? dtype = null)
    {
        Directory.CreateDirectory(componentDir);
        Config.Json.Save(Path.Combine(componentDir, ConfigName));
        StateDictLoader.Save(this, Path.Combine(componentDir, WeightsName), dtype: dtype);
    }

    /// <summary>The time embedding for a 0-dim (broadcast) or 1-D timestep tensor of any numeric dtype, in <paramref name="dtype"/>.</summary>
    public Tensor TimeEmbedding(Tensor timestep, long batch, ScalarType dtype, Device device)
    {
        using var scope = torch.NewDisposeScope();
        var t = timestep.to(device);
        if (t.dim() == 0) t = t[TensorIndex.None];
        t = t.expand(batch);
        var tEmb = time_proj.forward(t).to(dtype);
        return time_embedding.forward(tEmb).MoveToOuterDisposeScope();
    }

    /// <param name="sample">noisy latents [B, C, H, W].</param>
    /// <param name="timestep">int64 or float, 0-dim (all rows) or 1-D [B]; fractional values are used as they are.</param>
    /// <param name="encoderHiddenStates">text encoder states [B, L, cross_attention_dim].</param>
    public override Tensor forward(Tensor sample, Tensor timestep, Tensor encoderHiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        // when H, W are not multiples of 2^upsamplers, each upsampler is told the skip tensor's size
        long factor = 1L << numUpsamplers;
        bool forwardUpsampleSize = sample.shape[^2] % factor != 0 || sample.shape[^1] % factor != 0;

        var emb = TimeEmbedding(timestep, sample.shape[0], sample.dtype, sample.device);
        var x = Config.CenterInputSample ? 2 * sample - 1.0 : sample;
        x = MixedPrecision.Forward(conv_in, x);

        var resSamples = new List<Tensor> { x };
        foreach (var block in down_blocks)
        {
            var (h, res) = block.Forward(x, emb, encoderHiddenStates);
            x = h;
            resSamples.AddRange(res);
        }

        x = mid_block.forward(x, emb, encoderHiddenStates);

        for (int i = 0; i < up_blocks.Count; i++)
        {
            var block = up_blocks[i];
            bool isFinal = i == up_blocks.Count - 1;
            var res = resSamples.GetRange(resSamples.Count - block.ResnetCount, block.ResnetCount);
            resSamples.RemoveRange(resSamples.Count - block.ResnetCount, block.ResnetCount);
            long[]? upsampleSize = !isFinal && forwardUpsampleSize ? resSamples[^1].shape[2..] : null;
            x = block.Forward(x, res, emb, encoderHiddenStates, upsampleSize);
        }

        x = MixedPrecision.Forward(conv_out, conv_act.forward(MixedPrecision.Forward(conv_norm_out, x)));
        return x.MoveToOuterDisposeScope();
    }

    public Tensor forward(Tensor sample, long timestep, Tensor encoderHiddenStates)
    {
        using var t = torch.tensor(timestep, ScalarType.Int64);
        return forward(sample, t, encoderHiddenStates);
    }

    public Tensor forward(Tensor sample, double timestep, Tensor encoderHiddenStates)
    {
        using var t = torch.tensor((float)timestep, ScalarType.Float32);
        return forward(sample, t, encoderHiddenStates);
    }
}
