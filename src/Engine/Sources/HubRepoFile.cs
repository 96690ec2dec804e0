namespace DreamBooth.Engine.Sources;

/// <summary>A file of a Hub repository as the model info API lists it; <see cref="Sha256"/> is set for LFS files.</summary>
public sealed record HubRepoFile(string Path, long? Size, string? Sha256);
