namespace DreamBooth.Engine.IO;

/// <summary>A diffusers pipeline folder that is missing, incomplete or malformed. The message names the path.</summary>
public class DiffusersFolderException : IOException
{
    public string FolderPath { get; }
    public DiffusersFolderException(string path, string message, Exception? inner = null) : base(message, inner) => FolderPath = path;
}

/// <summary>Only pickle weights (<c>.bin</c>, <c>.ckpt</c>, <c>.pt</c>, <c>.pth</c>) were found; they are never unpickled.</summary>
public sealed class PickleWeightsException : DiffusersFolderException
{
    public IReadOnlyList<string> PickleFiles { get; }
    public PickleWeightsException(string path, IReadOnlyList<string> files)
        : base(path, $"'{path}' holds only pickle weights ({string.Join(", ", files.Select(System.IO.Path.GetFileName))}). " +
            "Pickle weights are not loaded for safety (unpickling can run arbitrary code); convert them to safetensors, e.g. in Python: " +
            "DiffusionPipeline.from_pretrained(folder).save_pretrained(folder, safe_serialization=True), or for one model " +
            "safetensors.torch.save_file(torch.load(file, weights_only=True), 'diffusion_pytorch_model.safetensors').")
        => PickleFiles = files;
}
