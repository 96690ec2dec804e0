namespace DreamBooth.Engine.Training;

/// <summary>
/// One subject a run learns: its photos and prompt, and with prior preservation its class images and class prompt
/// (the concepts list of the widely used DreamBooth fork of diffusers' script, <c>--concepts_list</c>). A run's first
/// concept is its -InstanceDataDirectory, -InstancePrompt, -ClassDataDirectory and -ClassPrompt; more are trained beside it.
/// </summary>
public sealed record DreamBoothConcept
{
    public required string InstanceDataDirectory { get; init; }
    public required string InstancePrompt { get; init; }
    public string? ClassDataDirectory { get; init; }
    public string? ClassPrompt { get; init; }
    /// <summary>
    /// kohya-ss' repeats (its folder names' "10_" prefix, num_repeats): each instance image counts this many times in an
    /// epoch, so that a concept with few photos is seen as often as one with many. 1: once.
    /// </summary>
    public int Repeats { get; init; } = 1;

    /// <summary>The class folder as one key however it is written (full path, no trailing separator; any case on Windows).</summary>
    public string? ClassFolderKey => ClassDataDirectory is null ? null : FolderKey(ClassDataDirectory);

    public static string FolderKey(string folder)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        return OperatingSystem.IsWindows() ? full.ToUpperInvariant() : full;
    }
}
