namespace DreamBooth.Engine.Training;

/// <summary>
/// Which pixels a dataset item shows: the image file, the crop of its resized copy (at top, left, of width × height: the
/// resolution square, or the image's aspect-ratio bucket) and the flip. Two equal views give the same pixel tensor, so
/// the frozen VAE's latent distribution of a view can be computed once (<see cref="LatentCache"/>).
/// </summary>
public readonly record struct ImageView(string Path, int Top, int Left, bool Flip, int Width, int Height);
