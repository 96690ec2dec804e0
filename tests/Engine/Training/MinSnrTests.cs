using DreamBooth.Engine.Training;

namespace DreamBooth.Engine.Tests.Training;

public class MinSnrTests
{
    [Fact]
    public void WeightsMatchHandValues()
    {
        using var scope = torch.NewDisposeScope();
        var alphasCumprod = torch.tensor(new[] { 0.9f, 0.5f, 0.1f, 0.01f });
        var timesteps = torch.tensor(new long[] { 0, 2, 3, 1 });
        // SNR = ᾱ/(1 − ᾱ): 9, 1/9, 1/99, 1 for timesteps 0, 2, 3, 1; γ = 5.
        double[] snr = [9, 1.0 / 9, 1.0 / 99, 1];
        var s = MinSnr.ComputeSnr(alphasCumprod, timesteps).data<float>().ToArray();
        var eps = MinSnr.Weights(alphasCumprod, timesteps, 5.0, "epsilon").data<float>().ToArray();
        var v = MinSnr.Weights(alphasCumprod, timesteps, 5.0, "v_prediction").data<float>().ToArray();
        double[] expectEps = [5.0 / 9, 1, 1, 1];
        double[] expectV = [0.5, 0.1, 0.01, 0.5];
        for (int i = 0; i < 4; i++)
        {
            Assert.True(Math.Abs(s[i] - snr[i]) <= 1e-5 * snr[i], $"snr {i}: {s[i]} vs {snr[i]}");
            Assert.True(Math.Abs(eps[i] - expectEps[i]) <= 1e-6, $"epsilon {i}: {eps[i]} vs {expectEps[i]}");
            Assert.True(Math.Abs(v[i] - expectV[i]) <= 1e-6, $"v {i}: {v[i]} vs {expectV[i]}");
        }
        Assert.Throws<ArgumentException>(() => MinSnr.Weights(alphasCumprod, timesteps, 5.0, "sample"));

        // train_dreambooth.py: min(snr, γ)/snr, plus 1 for v_prediction.
        var dbEps = MinSnr.DreamBoothWeights(alphasCumprod, timesteps, 5.0, "epsilon").data<float>().ToArray();
        var dbV = MinSnr.DreamBoothWeights(alphasCumprod, timesteps, 5.0, "v_prediction").data<float>().ToArray();
        for (int i = 0; i < 4; i++)
        {
            Assert.True(Math.Abs(dbEps[i] - expectEps[i]) <= 1e-6, $"dreambooth epsilon {i}: {dbEps[i]}");
            Assert.True(Math.Abs(dbV[i] - (expectEps[i] + 1)) <= 1e-6, $"dreambooth v {i}: {dbV[i]}");
        }
    }

    [Fact]
    public void DebiasedEstimationWeights_AreOneOverRootSnr_CappedAt1000()
    {
        using var scope = torch.NewDisposeScope();
        var alphasCumprod = torch.tensor(new[] { 0.9999f, 0.5f, 0.1f, 0.8f });
        var timesteps = torch.tensor(new long[] { 0, 1, 2, 3 });
        // SNR = ᾱ/(1 − ᾱ): 9999 (capped to 1000), 1, 1/9, 4.
        var eps = MinSnr.DebiasedWeights(alphasCumprod, timesteps, "epsilon").data<float>().ToArray();
        var v = MinSnr.DebiasedWeights(alphasCumprod, timesteps, "v_prediction").data<float>().ToArray();
        double[] expectEps = [1 / Math.Sqrt(1000), 1, 3, 0.5];
        double[] expectV = [1 / 1001.0, 0.5, 0.9, 0.2];
        for (int i = 0; i < 4; i++)
        {
            Assert.True(Math.Abs(eps[i] - expectEps[i]) <= 1e-5 * expectEps[i], $"epsilon {i}: {eps[i]} vs {expectEps[i]}");
            Assert.True(Math.Abs(v[i] - expectV[i]) <= 1e-5 * expectV[i], $"v {i}: {v[i]} vs {expectV[i]}");
        }
    }
}
