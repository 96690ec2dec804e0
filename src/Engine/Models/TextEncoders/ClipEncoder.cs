using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.TextEncoders;

/// <summary>
/// transformers' <c>CLIPEncoder</c>: the stack of <see cref="ClipEncoderLayer"/>s. Returns the input and every
/// layer's output when asked (transformers' <c>hidden_states</c>), else only the last.
/// </summary>
public sealed class ClipEncoder : nn.Module
{
    readonly ModuleList<ClipEncoderLayer> layers;

    public ModuleList<ClipEncoderLayer> Layers => layers;

    /// <summary>Run each layer through <see cref="CheckpointRunner"/> while training with gradients enabled.</summary>
    public bool GradientCheckpointing { get; set; }

    /// <summary>
    /// Recomputes <c>fn(inputs)</c> in backward instead of keeping its activations (a reentrant checkpoint).
    /// Required when <see cref="GradientCheckpointing"/> is on.
    /// </summary>
    public Func<Func<Tensor[], Tensor[]>, Tensor[], Tensor[]>? CheckpointRunner { get; set; }

    public ClipEncoder(ClipTextConfig config) : base(nameof(ClipEncoder))
    {
        layers = new ModuleList<ClipEncoderLayer>();
        for (int i = 0; i < config.NumHiddenLayers; i++) layers.Add(new ClipEncoderLayer(config));
        RegisterComponents();
    }

    /// <param name="inputsEmbeds">[batch, seq, hidden]</param>
    /// <param name="attentionMask">combined additive mask [batch, 1, seq, seq]</param>
    /// <param name="layerCount">how many layers to run (fewer than all when only an earlier hidden state is needed)</param>
    /// <param name="outputHiddenStates">true: return the input and every layer output; false: only the last output</param>
    public List<Tensor> Forward(Tensor inputsEmbeds, Tensor? attentionMask, int layerCount, bool outputHiddenStates)
    {
        if (layerCount < 0 || layerCount > layers.Count) throw new ArgumentOutOfRangeException(nameof(layerCount));
        bool checkpoint = GradientCheckpointing && training && is_grad_enabled();
        if (checkpoint && CheckpointRunner is null)
            throw new InvalidOperationException("GradientCheckpointing is on but no CheckpointRunner was given to the text encoder.");

        var states = new List<Tensor>();
        if (outputHiddenStates) states.Add(inputsEmbeds);
        var h = inputsEmbeds;
        for (int i = 0; i < layerCount; i++)
        {
            var layer = layers[i];
            if (checkpoint)
            {
                Tensor[] inputs = attentionMask is null ? new[] { h } : new[] { h, attentionMask };
                h = CheckpointRunner!(xs => new[] { layer.forward(xs[0], xs.Length > 1 ? xs[1] : null) }, inputs)[0];
            }
            else
            {
                h = layer.forward(h, attentionMask);
            }
            if (outputHiddenStates) states.Add(h);
        }
        if (!outputHiddenStates) states.Add(h);
        return states;
    }
}
