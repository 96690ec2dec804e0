using DreamBooth.Engine.Schedulers;

namespace DreamBooth.Engine.Tests.Schedulers;

/// <summary>Math checks not covered by the fixtures: exact LMS integration, DDIM with eta > 0, timestep spacings.</summary>
public class SchedulerMathTests
{
    /// <summary>Composite Simpson over the product form of the Lagrange basis (what scipy's quad approximates).</summary>
    static double Simpson(float[] sigmas, int order, int t, int j, int intervals = 2000)
    {
        double Basis(double tau)
        {
            double p = 1;
            for (int k = 0; k < order; k++)
                if (k != j) p *= (tau - sigmas[t - k]) / ((double)sigmas[t - j] - sigmas[t - k]);
            return p;
        }
        double a = sigmas[t], b = sigmas[t + 1], h = (b - a) / intervals, sum = Basis(a) + Basis(b);
        for (int i = 1; i < intervals; i++) sum += Basis(a + i * h) * (i % 2 == 1 ? 4 : 2);
        return sum * h / 3;
    }

    [Fact]
    public void LmsCoefficientIsTheExactIntegralOfTheLagrangeBasis()
    {
        var sigmas = new float[] { 14.6146f, 9.7232f, 6.4372f, 4.2336f, 2.7581f, 1.7734f, 0.0f };
        for (int t = 0; t < sigmas.Length - 1; t++)
            for (int order = 1; order <= Math.Min(t + 1, 4); order++)
            {
                double total = 0;
                for (int j = 0; j < order; j++)
                {
                    double exact = LMSDiscreteScheduler.LmsCoefficient(sigmas, order, t, j);
                    double numeric = Simpson(sigmas, order, t, j);
                    Assert.True(Math.Abs(exact - numeric) <= 1e-10 * Math.Max(1, Math.Abs(numeric)), $"t={t} order={order} j={j}: {exact} vs {numeric}");
                    total += exact;
                }
                // the basis sums to 1, so the coefficients sum to the step length
                Assert.Equal(sigmas[t + 1] - (double)sigmas[t], total, 10);
            }
    }

    [Fact]
    public void DdimWithEtaAddsScaledNoiseFromTheGenerator()
    {
        using var scope = torch.NewDisposeScope();
        using var s = new DDIMScheduler(SchedulerFixtures.HubConfig());
        s.SetTimesteps(10);
        var x = torch.randn(new long[] { 1, 4, 8, 8 }, generator: new torch.Generator(1));
        var eps = torch.randn(new long[] { 1, 4, 8, 8 }, generator: new torch.Generator(2));
        long t = s.Timesteps[1].item<long>(), prevT = t - 100;
        var deterministic = s.Step(eps, t, x, eta: 0, useClippedModelOutput: false);
        var stochastic = s.Step(eps, t, x, eta: 1.0, useClippedModelOutput: false, generator: new torch.Generator(7));
        var noise = torch.randn(new long[] { 1, 4, 8, 8 }, generator: new torch.Generator(7));

        // formula (12)/(16) of the DDIM paper in float64
        double a = s.AlphasCumprod[t].item<float>(), ap = s.AlphasCumprod[prevT].item<float>();
        double sigma = Math.Sqrt((1 - ap) / (1 - a) * (1 - a / ap));
        var x0 = (x.to(torch.ScalarType.Float64) - Math.Sqrt(1 - a) * eps.to(torch.ScalarType.Float64)) / Math.Sqrt(a);
        var expected = Math.Sqrt(ap) * x0 + Math.Sqrt(1 - ap - sigma * sigma) * eps.to(torch.ScalarType.Float64) + sigma * noise.to(torch.ScalarType.Float64);
        Fixtures.AssertRelative(stochastic, expected, 1e-6, "DDIM eta=1");
        Assert.True(Fixtures.RelativeError(stochastic, deterministic) > 1e-3, "eta=1 must add noise");
    }

    [Theory]
    [InlineData("leading", new long[] { 901, 801, 701, 601, 501, 401, 301, 201, 101, 1 })]
    [InlineData("linspace", new long[] { 999, 888, 777, 666, 555, 444, 333, 222, 111, 0 })]
    [InlineData("trailing", new long[] { 999, 899, 799, 699, 599, 499, 399, 299, 199, 99 })]
    public void DdimTimestepSpacings(string spacing, long[] expected)
    {
        using var s = SchedulerFactory.Create("ddim", SchedulerFixtures.HubConfig(),
            new Dictionary<string, System.Text.Json.Nodes.JsonNode?> { ["timestep_spacing"] = spacing });
        s.SetTimesteps(10);
        Assert.Equal(expected, s.Timesteps.data<long>().ToArray());
    }

    [Fact]
    public void SquaredCosineBetasFollowTheAlphaBarFormula()
    {
        using var s = SchedulerFactory.Create("ddpm", SchedulerFixtures.HubConfig(),
            new Dictionary<string, System.Text.Json.Nodes.JsonNode?> { ["beta_schedule"] = "squaredcos_cap_v2" });
        static double AlphaBar(double t) => Math.Pow(Math.Cos((t + 0.008) / 1.008 * Math.PI / 2), 2);
        var betas = s.Betas.data<float>().ToArray();
        Assert.Equal(1000, betas.Length);
        Assert.Equal((float)(1 - AlphaBar(0.001) / AlphaBar(0)), betas[0]);
        Assert.Equal(0.999f, betas[999]);   // capped at max_beta
    }
}
