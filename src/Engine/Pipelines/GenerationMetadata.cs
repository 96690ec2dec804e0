using System.Globalization;

namespace DreamBooth.Engine.Pipelines;

/// <summary>PNG text metadata for a generated image: an A1111-style "parameters" line plus one key per setting.</summary>
public static class GenerationMetadata
{
    public static IReadOnlyDictionary<string, string> For(GeneratedImage img, string model)
    {
        var ci = CultureInfo.InvariantCulture;
        var parameters = img.Prompt
            + (string.IsNullOrEmpty(img.NegativePrompt) ? "" : "\nNegative prompt: " + img.NegativePrompt)
            + string.Format(ci, "\nSteps: {0}, Sampler: {1}, CFG scale: {2}, Seed: {3}, Size: {4}x{5}, Model: {6}",
                img.Steps, img.Scheduler, img.GuidanceScale, img.Seed, img.Width, img.Height, Path.GetFileName(model.TrimEnd('/', '\\')))
            + (img.Strength is double s ? string.Format(ci, ", Denoising strength: {0}", s) : "");
        var keys = new Dictionary<string, string>
        {
            ["parameters"] = parameters,
            ["dreambooth:prompt"] = img.Prompt,
            ["dreambooth:negative_prompt"] = img.NegativePrompt,
            ["dreambooth:seed"] = img.Seed.ToString(ci),
            ["dreambooth:steps"] = img.Steps.ToString(ci),
            ["dreambooth:guidance_scale"] = img.GuidanceScale.ToString(ci),
            ["dreambooth:scheduler"] = img.Scheduler,
            ["dreambooth:size"] = $"{img.Width}x{img.Height}",
            ["dreambooth:model"] = model,
            ["Software"] = "DreamBooth for PowerShell",
        };
        if (img.GuidanceRescale > 0) keys["dreambooth:guidance_rescale"] = img.GuidanceRescale.ToString(ci);
        if (img.InitImage is not null)
        {
            keys["dreambooth:init_image"] = img.InitImage;
            keys["dreambooth:strength"] = img.Strength!.Value.ToString(ci);
            if (img.MaskImage is not null) keys["dreambooth:mask_image"] = img.MaskImage;
        }
        return keys;
    }
}
