using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Models;

/// <summary>diffusers <c>GEGLU</c> (models/activations.py): one projection to 2×out, split into value and gate, value·gelu(gate).</summary>
public sealed class GEGLU : nn.Module<Tensor, Tensor>
{
    readonly Linear proj;

    public GEGLU(int dimIn, int dimOut, bool bias = true) : base(nameof(GEGLU))
    {
        proj = Layers.Linear(dimIn, dimOut * 2, hasBias: bias);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = torch.NewDisposeScope();
        var parts = MixedPrecision.Forward(proj, input).chunk(2, dim: -1);
        var gate = parts[1];
        return (parts[0] * nn.functional.gelu(gate)).MoveToOuterDisposeScope();
    }
}
