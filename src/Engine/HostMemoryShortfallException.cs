namespace DreamBooth.Engine;

/// <summary>
/// A run whose weights, gradients and optimizer state alone need more host memory than is available: refused before it
/// starts (on Linux it would otherwise be killed with the process that hosts it). The message names what lowers it.
/// </summary>
public sealed class HostMemoryShortfallException : Exception
{
    public HostMemoryShortfallException(string message, long neededBytes, long availableBytes) : base(message)
    {
        NeededBytes = neededBytes;
        AvailableBytes = availableBytes;
    }

    public long NeededBytes { get; }
    public long AvailableBytes { get; }
}
