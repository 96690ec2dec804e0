using TorchSharp;
namespace DreamBooth.Engine.Schedulers;

/// <summary>
/// The numpy steps diffusers runs in set_timesteps (float64 unless noted), reproduced so timesteps and sigmas come out
/// identical: np.linspace, np.arange with a float step, np.interp, round-half-to-even, Karras sigmas and _sigma_to_t.
/// </summary>
public static class NumpyMath
{
    /// <summary>np.linspace(start, stop, num): start + i*step, last element exactly stop.</summary>
    public static double[] Linspace(double start, double stop, int num)
    {
        var r = new double[num];
        if (num == 1) { r[0] = start; return r; }
        double step = (stop - start) / (num - 1);
        for (int i = 0; i < num; i++) r[i] = start + i * step;
        r[num - 1] = stop;
        return r;
    }

    /// <summary>np.arange(start, stop, step) for a float step.</summary>
    public static double[] Arange(double start, double stop, double step)
    {
        int len = Math.Max(0, (int)Math.Ceiling((stop - start) / step));
        var r = new double[len];
        for (int i = 0; i < len; i++) r[i] = start + i * step;
        return r;
    }

    /// <summary>np.round: half to even.</summary>
    public static double Round(double x) => Math.Round(x, MidpointRounding.ToEven);

    /// <summary>np.interp(x, arange(len(fp)), fp) with fp upcast to float64.</summary>
    public static double Interp(double x, float[] fp)
    {
        int n = fp.Length;
        if (x <= 0) return fp[0];
        if (x >= n - 1) return fp[n - 1];
        int j = (int)Math.Floor(x);
        if (j == x) return fp[j];
        double slope = ((double)fp[j + 1] - fp[j]) / 1.0;
        return slope * (x - j) + fp[j];
    }

    /// <summary>Karras et al. (2022) rho=7 schedule from sigma_max to sigma_min (k-diffusion get_sigmas_karras).</summary>
    public static double[] KarrasSigmas(double sigmaMin, double sigmaMax, int n)
    {
        const double rho = 7.0;
        var ramp = Linspace(0, 1, n);
        double minInvRho = Math.Pow(sigmaMin, 1 / rho), maxInvRho = Math.Pow(sigmaMax, 1 / rho);
        return ramp.Select(r => Math.Pow(maxInvRho + r * (minInvRho - maxInvRho), rho)).ToArray();
    }

    /// <summary>
    /// diffusers' _sigma_to_t: the fractional training timestep whose log-sigma (log_sigmas is float32, as numpy keeps
    /// it) brackets log(sigma), by linear interpolation in log space.
    /// </summary>
    public static double SigmaToT(double sigma, float[] logSigmas)
    {
        double logSigma = Math.Log(Math.Max(sigma, 1e-10));
        int n = logSigmas.Length;
        // cumsum(dists >= 0).argmax(): the last index with log_sigmas[i] <= log_sigma, or 0 if none
        int low = 0, count = 0, best = 0;
        for (int i = 0; i < n; i++)
        {
            if (logSigma - logSigmas[i] >= 0) count++;
            if (count > best) { best = count; low = i; }
        }
        low = Math.Min(low, n - 2);
        int high = low + 1;
        double lo = logSigmas[low], hi = logSigmas[high];
        double w = Math.Clamp((lo - logSigma) / (lo - hi), 0, 1);
        return (1 - w) * low + w * high;
    }
}
