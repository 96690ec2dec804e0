using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>diffusers <c>TimestepEmbedding</c>: linear_1 → activation → linear_2.</summary>
public sealed class TimestepEmbedding : nn.Module<Tensor, Tensor>
{
    readonly Linear linear_1;
    readonly nn.Module<Tensor, Tensor> act;
    readonly Linear linear_2;

    public TimestepEmbedding(int inChannels, int timeEmbedDim, string actFn = "silu", int? outDim = null) : base(nameof(TimestepEmbedding))
    {
        linear_1 = Layers.Linear(inChannels, timeEmbedDim);
        act = Activations.Get(actFn);
        linear_2 = Layers.Linear(timeEmbedDim, outDim ?? timeEmbedDim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor sample)
    {
        using var scope = torch.NewDisposeScope();
        return MixedPrecision.Forward(linear_2, act.forward(MixedPrecision.Forward(linear_1, sample))).MoveToOuterDisposeScope();
    }
}
