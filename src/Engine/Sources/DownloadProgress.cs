namespace DreamBooth.Engine.Sources;

/// <summary>Progress of <see cref="HubDownloader.EnsureSnapshot"/>: one file's bytes, and which file of how many.</summary>
public sealed record DownloadProgress(string File, long BytesDone, long? BytesTotal, int FileIndex, int FileCount, bool FromCache = false);
