namespace DreamBooth.Engine.Sources;

/// <summary>A model source (Hub id, cache, download or single-file checkpoint) that cannot be used, with the reason.</summary>
public class ModelSourceException : Exception
{
    public ModelSourceException(string message, Exception? inner = null) : base(message, inner) { }
}
