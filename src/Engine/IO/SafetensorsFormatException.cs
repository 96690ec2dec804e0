namespace DreamBooth.Engine.IO;

/// <summary>A safetensors file that is truncated, corrupt or not safetensors at all. The message names the file.</summary>
public sealed class SafetensorsFormatException : FormatException
{
    public string FilePath { get; }

    public SafetensorsFormatException(string path, string problem)
        : base($"'{path}' is not a valid safetensors file: {problem}. Re-download or re-export the file.") => FilePath = path;
}
