using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace DreamBooth.Engine.IO;

/// <summary>
/// PIL's <c>Image.resize(size, Image.BILINEAR)</c> for 8-bit RGB (Pillow's Resample.c: triangle filter whose support
/// grows with the downscale factor, coefficients normalised per output pixel and rounded to 22-bit fixed point,
/// horizontal pass then vertical pass, each rounded and clipped to 8 bits). Reimplemented so training pixels equal PIL's.
/// </summary>
internal static class PilBilinear
{
    const int PrecisionBits = 32 - 8 - 2;
    const int Half = 1 << (PrecisionBits - 1);   // rounding offset

    public static Image<Rgb24> Resize(Image<Rgb24> image, int width, int height)
    {
        if (width == image.Width && height == image.Height) return image.Clone();   // PIL returns a copy
        int inW = image.Width, inH = image.Height;
        var src = new byte[inW * inH * 3];
        image.CopyPixelDataTo(src);

        // Horizontal pass on every row (PIL skips rows the vertical pass never reads; the values are the same).
        byte[] horizontal = src;
        if (width != inW)
        {
            var (bounds, kk, ksize) = Coefficients(inW, width);
            horizontal = new byte[width * inH * 3];
            for (int y = 0; y < inH; y++)
            {
                var row = src.AsSpan(y * inW * 3, inW * 3);
                var outRow = horizontal.AsSpan(y * width * 3, width * 3);
                for (int x = 0; x < width; x++)
                {
                    int xmin = bounds[2 * x], xcount = bounds[2 * x + 1];
                    var k = kk.AsSpan(x * ksize, xcount);
                    var pixels = row.Slice(xmin * 3, xcount * 3);
                    int r = Half, g = Half, b = Half;
                    for (int i = 0; i < k.Length; i++)
                    {
                        r += pixels[3 * i] * k[i]; g += pixels[3 * i + 1] * k[i]; b += pixels[3 * i + 2] * k[i];
                    }
                    outRow[3 * x] = Clip8(r); outRow[3 * x + 1] = Clip8(g); outRow[3 * x + 2] = Clip8(b);
                }
            }
        }
        byte[] output = horizontal;
        if (height != inH)
        {
            var (bounds, kk, ksize) = Coefficients(inH, height);
            output = new byte[width * height * 3];
            var acc = new int[width * 3];
            int rowBytes = width * 3;
            for (int y = 0; y < height; y++)
            {
                int ymin = bounds[2 * y], ycount = bounds[2 * y + 1];
                Array.Fill(acc, Half);
                for (int i = 0; i < ycount; i++)   // row by row: sequential memory access
                {
                    int w = kk[y * ksize + i];
                    var row = horizontal.AsSpan((ymin + i) * rowBytes, rowBytes);
                    for (int j = 0; j < rowBytes; j++) acc[j] += row[j] * w;
                }
                var outRow = output.AsSpan(y * rowBytes, rowBytes);
                for (int j = 0; j < rowBytes; j++) outRow[j] = Clip8(acc[j]);
            }
        }
        return Image.LoadPixelData<Rgb24>(output, width, height);
    }

    static byte Clip8(int v) { v >>= PrecisionBits; return (byte)(v < 0 ? 0 : v > 255 ? 255 : v); }

    /// <summary>Pillow's precompute_coeffs + normalize_coeffs_8bpc for the whole input range (no box).</summary>
    static (int[] Bounds, int[] Kk, int KSize) Coefficients(int inSize, int outSize)
    {
        const double filterSupport = 1.0;   // bilinear
        double scale = (double)inSize / outSize;
        double filterScale = Math.Max(scale, 1.0);
        double support = filterSupport * filterScale;
        int ksize = (int)Math.Ceiling(support) * 2 + 1;
        var bounds = new int[outSize * 2];
        var kk = new int[outSize * ksize];
        var k = new double[ksize];
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = (xx + 0.5) * scale;
            double ss = 1.0 / filterScale;
            int xmin = Math.Max((int)(center - support + 0.5), 0);
            int xmax = Math.Min((int)(center + support + 0.5), inSize) - xmin;
            double ww = 0.0;
            for (int x = 0; x < xmax; x++)
            {
                double t = Math.Abs((x + xmin - center + 0.5) * ss);
                k[x] = t < 1.0 ? 1.0 - t : 0.0;
                ww += k[x];
            }
            for (int x = 0; x < ksize; x++)
            {
                double w = x < xmax && ww != 0.0 ? k[x] / ww : 0.0;
                kk[xx * ksize + x] = w < 0 ? (int)(-0.5 + w * (1 << PrecisionBits)) : (int)(0.5 + w * (1 << PrecisionBits));
            }
            bounds[2 * xx] = xmin;
            bounds[2 * xx + 1] = xmax;
        }
        return (bounds, kk, ksize);
    }
}
