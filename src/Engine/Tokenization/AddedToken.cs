namespace DreamBooth.Engine.Tokenization;

/// <summary>
/// transformers' AddedToken: a string matched verbatim in the raw prompt before normalisation and mapped to one id.
/// Lstrip/Rstrip make it swallow the whitespace on that side (false for CLIP's tokens).
/// </summary>
public sealed record AddedToken(string Content, int Id, bool Lstrip = false, bool Rstrip = false);
