namespace DreamBooth.Engine.Training;

/// <summary>
/// kohya-ss' aspect-ratio bucketing (<c>--enable_bucket</c>, its <c>make_bucket_resolutions</c> and
/// <c>select_bucket</c>): training sizes of at most resolution² pixels, sides multiples of the step between the minimum
/// and maximum side; each image trains at the size whose aspect ratio is nearest its own, resized to cover it and
/// cropped, instead of being cropped to a square (a portrait keeps its head and feet).
/// </summary>
public sealed class AspectRatioBuckets
{
    public IReadOnlyList<(int Width, int Height)> Resolutions { get; }
    readonly HashSet<(int, int)> _set;

    public AspectRatioBuckets(int resolution, int minSize = 256, int maxSize = 1024, int step = 64)
    {
        if (step <= 0 || minSize <= 0 || minSize > maxSize || minSize % step != 0 || maxSize % step != 0)
            throw new ArgumentException($"Bucket sides must be positive multiples of the step {step} with minimum ≤ maximum (got {minSize}..{maxSize}).");
        long maxArea = (long)resolution * resolution;
        var sizes = new HashSet<(int, int)>();
        int square = (int)(Math.Sqrt(maxArea) / step) * step;
        sizes.Add((square, square));
        for (int width = minSize; width <= maxSize; width += step)
        {
            int height = (int)Math.Min(maxSize, maxArea / width / step * step);
            if (height < minSize) continue;
            sizes.Add((width, height));
            sizes.Add((height, width));
        }
        Resolutions = sizes.OrderBy(s => s.Item1).ThenBy(s => s.Item2).ToList();
        _set = sizes;
    }

    /// <summary>A run's buckets: its -Resolution, -MinBucketResolution, -MaxBucketResolution and -BucketResolutionSteps.</summary>
    public static AspectRatioBuckets For(DreamBoothOptions o) => new(o.Resolution, o.MinBucketResolution, o.MaxBucketResolution, o.BucketResolutionSteps);

    /// <summary>The bucket of an image: its own size where that is a bucket, else the first with the nearest aspect ratio.</summary>
    public (int Width, int Height) Select(int imageWidth, int imageHeight)
    {
        if (_set.Contains((imageWidth, imageHeight))) return (imageWidth, imageHeight);
        double aspect = (double)imageWidth / imageHeight;
        var best = Resolutions[0];
        double bestError = double.MaxValue;
        foreach (var r in Resolutions)
        {
            double error = Math.Abs((double)r.Width / r.Height - aspect);
            if (error < bestError) { bestError = error; best = r; }
        }
        return best;
    }

    /// <summary>
    /// The size the image is resized to before its crop: scaled so that it covers the bucket, the side whose aspect
    /// ratio is the limit matching exactly (kohya's int(x · scale + 0.5)).
    /// </summary>
    public static (int Width, int Height) CoverSize(int imageWidth, int imageHeight, (int Width, int Height) bucket)
    {
        double scale = (double)imageWidth / imageHeight > (double)bucket.Width / bucket.Height
            ? (double)bucket.Height / imageHeight
            : (double)bucket.Width / imageWidth;
        return (Math.Max(bucket.Width, (int)(imageWidth * scale + 0.5)), Math.Max(bucket.Height, (int)(imageHeight * scale + 0.5)));
    }
}
