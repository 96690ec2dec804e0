using DreamBooth.Engine.Models.Autoencoders;
using DreamBooth.Engine.Models.Unets;

namespace DreamBooth.Engine.Tests.Models;

/// <summary>Training needs every parameter in the graph: a backward through the scoped forwards reaches all of them.</summary>
public sealed class UNetGradientTests
{
    [Fact]
    public void Backward_ReachesEveryUNetParameter()
    {
        using var unet = UNet2DConditionModel.FromPretrained(Path.Combine(Fixtures.TinySd, "unet"));
        unet.train();
        using var scope = torch.NewDisposeScope();
        var sample = torch.randn(1, 4, 16, 16, generator: new torch.Generator(0));
        var context = torch.randn(1, 5, 32, generator: new torch.Generator(1));
        var loss = unet.forward(sample, torch.tensor(new long[] { 400 }), context).pow(2).mean();
        loss.backward();
        var noGrad = unet.named_parameters().Where(p => p.parameter.grad is null || p.parameter.grad.abs().sum().item<float>() == 0)
            .Select(p => p.name).ToList();
        Assert.True(noGrad.Count == 0, "parameters without gradient: " + string.Join(", ", noGrad.Take(10)));
    }

    [Fact]
    public void Backward_ReachesEveryVaeDecoderParameter()
    {
        using var vae = AutoencoderKL.FromPretrained(Path.Combine(Fixtures.TinySd, "vae"));
        using var scope = torch.NewDisposeScope();
        var image = torch.rand(1, 3, 16, 16, generator: new torch.Generator(0)) * 2 - 1;
        using var dist = vae.Encode(image);
        vae.Decode(dist.Sample(new torch.Generator(1))).pow(2).mean().backward();
        var noGrad = vae.named_parameters().Where(p => p.parameter.grad is null).Select(p => p.name).ToList();
        Assert.True(noGrad.Count == 0, "parameters without gradient: " + string.Join(", ", noGrad.Take(10)));
    }
}
