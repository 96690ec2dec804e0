using System.Diagnostics;

namespace DreamBooth.Engine;

/// <summary>Where libtorch's bridge library was loaded from (for diagnostics).</summary>
internal static class NativeLibrary
{
    public static string? LoadedPath
    {
        get
        {
            try
            {
                foreach (ProcessModule m in Process.GetCurrentProcess().Modules)
                    if (m.ModuleName.Contains("LibTorchSharp", StringComparison.OrdinalIgnoreCase)) return m.FileName;
            }
            catch { /* not available on this platform */ }
            return null;
        }
    }
}
