using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>
/// diffusers <c>ResnetBlock2D</c> (models/resnet.py) with time_embedding_norm "default": GroupNorm, act, conv,
/// + projected time embedding, GroupNorm, act, dropout, conv, plus a 1×1 shortcut when channels change;
/// the sum is divided by output_scale_factor.
/// </summary>
public sealed class ResnetBlock2D : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly GroupNorm norm1;
    readonly Conv2d conv1;
    readonly Linear? time_emb_proj;
    readonly GroupNorm norm2;
    readonly Dropout dropout;
    readonly Conv2d conv2;
    readonly nn.Module<Tensor, Tensor> nonlinearity;
    readonly Conv2d? conv_shortcut;
    readonly double outputScaleFactor;
    readonly GradientCheckpointing? checkpointing;

    public int InChannels { get; }
    public int OutChannels { get; }

    /// <param name="tembChannels">null for blocks without a time embedding (VAE).</param>
    /// <param name="checkpointing">the model's checkpointing; in its selective mode each GroupNorm + activation pair
    /// is recomputed in backward instead of keeping the GroupNorm's output (the convolution keeps the activation's).</param>
    public ResnetBlock2D(int inChannels, int outChannels, int? tembChannels, int groups = 32, double eps = 1e-6,
        double dropout = 0.0, string nonLinearity = "swish", double outputScaleFactor = 1.0, GradientCheckpointing? checkpointing = null)
        : base(nameof(ResnetBlock2D))
    {
        this.checkpointing = checkpointing;
        InChannels = inChannels; OutChannels = outChannels;
        this.outputScaleFactor = outputScaleFactor;
        norm1 = Layers.GroupNorm(groups, inChannels, eps);
        conv1 = Layers.Conv2d(inChannels, outChannels, 3, 1, 1);
        if (tembChannels is int t) time_emb_proj = Layers.Linear(t, outChannels);
        norm2 = Layers.GroupNorm(groups, outChannels, eps);
        this.dropout = nn.Dropout(dropout);
        conv2 = Layers.Conv2d(outChannels, outChannels, 3, 1, 1);
        nonlinearity = Activations.Get(nonLinearity);
        if (inChannels != outChannels) conv_shortcut = Layers.Conv2d(inChannels, outChannels, 1, 1, 0);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input, Tensor? temb)
    {
        using var scope = torch.NewDisposeScope();
        var h = MixedPrecision.Forward(conv1, NormAndActivation(norm1, input));
        if (time_emb_proj is not null && temb is not null)
        {
            var t = MixedPrecision.Forward(time_emb_proj, nonlinearity.forward(temb));
            h = h + t[.., .., TensorIndex.None, TensorIndex.None];
        }
        h = MixedPrecision.Forward(conv2, dropout.forward(NormAndActivation(norm2, h)));
        var shortcut = conv_shortcut is null ? input : MixedPrecision.Forward(conv_shortcut, input);
        var output = shortcut + h;
        if (outputScaleFactor != 1.0) output = output / outputScaleFactor;
        return output.MoveToOuterDisposeScope();
    }

    Tensor NormAndActivation(GroupNorm norm, Tensor x)
    {
        Tensor[] Apply(Tensor[] a) => [nonlinearity.forward(MixedPrecision.Forward(norm, a[0]))];
        return checkpointing is null ? Apply([x])[0] : checkpointing.RunSegment(Apply, x);
    }
}
