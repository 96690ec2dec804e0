namespace DreamBooth.Engine.Training;

/// <summary>A run that cannot fit on its output's drive, refused before it starts (ResourceUnavailable).</summary>
public sealed class InsufficientDiskSpaceException(string message, long neededBytes, long freeBytes) : IOException(message)
{
    public long NeededBytes { get; } = neededBytes;
    public long FreeBytes { get; } = freeBytes;
}
