using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.TextEncoders;

/// <summary>transformers' <c>CLIPMLP</c>: fc1 → hidden_act → fc2.</summary>
public sealed class ClipMlp : nn.Module<Tensor, Tensor>
{
    readonly Linear fc1;
    readonly Linear fc2;
    readonly Func<Tensor, Tensor> activation;

    public Linear Fc1 => fc1;
    public Linear Fc2 => fc2;
    public string ActivationName { get; }

    public ClipMlp(ClipTextConfig config) : base(nameof(ClipMlp))
    {
        fc1 = Layers.Linear(config.HiddenSize, config.IntermediateSize);
        fc2 = Layers.Linear(config.IntermediateSize, config.HiddenSize);
        ActivationName = config.HiddenAct;
        activation = ClipActivation.Get(config.HiddenAct);
        RegisterComponents();
    }

    public override Tensor forward(Tensor hiddenStates)
    {
        using var scope = NewDisposeScope();
        // MixedPrecision.Forward applies LoRA adapters (kohya files may target fc1/fc2) and the autocast dtype.
        return MixedPrecision.Forward(fc2, activation(MixedPrecision.Forward(fc1, hiddenStates))).MoveToOuterDisposeScope();
    }
}
