using static TorchSharp.torch;

namespace DreamBooth.Engine.IO;

/// <summary>
/// A named set of tensors backed by safetensors: one file (<see cref="SafetensorsFile"/>) or the shards of one
/// state dict (<see cref="SafetensorsShardSet"/>). Lets a loader treat both alike.
/// </summary>
public interface ISafetensorsSource : IDisposable
{
    /// <summary>The file, or the index file of a shard set, for error messages.</summary>
    string Path { get; }
    IEnumerable<string> Keys { get; }
    bool Contains(string name);
    SafetensorsEntry this[string name] { get; }
    Tensor Read(string name, ScalarType? dtype = null, Device? device = null);
    void CopyInto(string name, Tensor target);
}
