namespace DreamBooth.Engine.Sources;

/// <summary>
/// Where and how to reach the Hub. <see cref="FromEnvironment"/> reads the variables huggingface_hub reads:
/// <c>HF_ENDPOINT</c>, <c>HF_TOKEN</c> (else <c>HF_HOME/token</c>), <c>HF_HUB_OFFLINE</c>, <c>HF_HUB_CACHE</c>/<c>HF_HOME</c>.
/// </summary>
public sealed record HubOptions
{
    public string Endpoint { get; init; } = "https://huggingface.co";
    /// <summary>Sent as <c>Authorization: Bearer</c>; never logged or put in messages.</summary>
    public string? Token { get; init; }
    public bool Offline { get; init; }
    /// <summary>Weights variant, e.g. <c>fp16</c> for <c>diffusion_pytorch_model.fp16.safetensors</c>.</summary>
    public string? Variant { get; init; }
    public string CacheDir { get; init; } = HuggingFaceCache.DefaultCacheDir();

    public static HubOptions FromEnvironment(string? variant = null, bool offline = false)
    {
        var endpoint = Environment.GetEnvironmentVariable("HF_ENDPOINT");
        return new HubOptions
        {
            Endpoint = string.IsNullOrWhiteSpace(endpoint) ? "https://huggingface.co" : endpoint.TrimEnd('/'),
            Token = ReadToken(),
            Offline = offline || IsTruthy(Environment.GetEnvironmentVariable("HF_HUB_OFFLINE")),
            Variant = variant,
            CacheDir = HuggingFaceCache.DefaultCacheDir(),
        };
    }

    static string? ReadToken()
    {
        var token = Environment.GetEnvironmentVariable("HF_TOKEN");
        if (!string.IsNullOrWhiteSpace(token)) return token.Trim();
        var path = Environment.GetEnvironmentVariable("HF_TOKEN_PATH") is { Length: > 0 } p ? p : Path.Combine(HuggingFaceCache.HfHome(), "token");
        try { return File.Exists(path) ? File.ReadAllText(path).Trim() is { Length: > 0 } t ? t : null : null; }
        catch (IOException) { return null; }
    }

    /// <summary>huggingface_hub's truthy values: 1, ON, YES, TRUE (any case).</summary>
    internal static bool IsTruthy(string? value) => value?.Trim().ToUpperInvariant() is "1" or "ON" or "YES" or "TRUE";
}
