using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>diffusers <c>FeedForward</c> with activation "geglu": net = [GEGLU(dim, 4·dim), Dropout, Linear(4·dim, dim)].</summary>
public sealed class FeedForward : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<nn.Module<Tensor, Tensor>> net;

    public FeedForward(int dim, int? dimOut = null, int mult = 4, double dropout = 0.0, bool bias = true) : base(nameof(FeedForward))
    {
        int inner = dim * mult;
        net = new ModuleList<nn.Module<Tensor, Tensor>>(new GEGLU(dim, inner, bias), nn.Dropout(dropout), Layers.Linear(inner, dimOut ?? dim, hasBias: bias));
        RegisterComponents();
    }

    public override Tensor forward(Tensor input) => Output(Hidden(input));

    /// <summary>GEGLU and dropout: the 4·dim hidden activation.</summary>
    public Tensor Hidden(Tensor input)
    {
        using var scope = torch.NewDisposeScope();
        return MixedPrecision.Forward(net[1], MixedPrecision.Forward(net[0], input)).MoveToOuterDisposeScope();
    }

    /// <summary>The output projection of the hidden activation.</summary>
    public Tensor Output(Tensor hidden) => MixedPrecision.Forward(net[2], hidden);
}
