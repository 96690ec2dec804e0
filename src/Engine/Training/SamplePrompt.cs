using System.Globalization;
using System.Text.RegularExpressions;

namespace DreamBooth.Engine.Training;

/// <summary>
/// A validation prompt with kohya-ss' sample-prompt options after it (its <c>--sample_prompts</c> lines):
/// <c>a photo of sks dog --n blurry, lowres --w 512 --h 768 --s 30 --l 7.5 --d 42</c> — negative prompt, width,
/// height, steps, guidance scale, seed. A prompt without options generates as diffusers' validation does.
/// </summary>
public sealed partial record SamplePrompt(string Prompt, string? Negative, int? Width, int? Height, int? Steps, double? GuidanceScale, long? Seed)
{
    public bool HasOptions => Negative is not null || Width is not null || Height is not null || Steps is not null || GuidanceScale is not null || Seed is not null;

    [GeneratedRegex(@"\s--(?=[a-zA-Z]\b)")]
    private static partial Regex OptionStart();

    /// <summary>Parses one prompt line; an unknown option or a bad value throws ArgumentException naming it.</summary>
    public static SamplePrompt Parse(string line)
    {
        var parts = OptionStart().Split(line);
        var prompt = parts[0].Trim();
        if (prompt.Length == 0) throw new ArgumentException($"The validation prompt '{line}' has no text before its options.");
        string? negative = null; int? width = null, height = null, steps = null; double? scale = null; long? seed = null;
        foreach (var part in parts.Skip(1))
        {
            var key = part[0];
            var value = part[1..].Trim();
            string Where() => $"option --{key} of the validation prompt '{line}'";
            int Int() => int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v > 0 ? v : throw new ArgumentException($"The {Where()} needs a positive whole number (got '{value}').");
            switch (key)
            {
                case 'n': negative = value; break;
                case 'w': width = Int(); break;
                case 'h': height = Int(); break;
                case 's': steps = Int(); break;
                case 'd': seed = long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var d) && d >= 0 ? d : throw new ArgumentException($"The {Where()} needs a seed, a whole number ≥ 0 (got '{value}')."); break;
                case 'l': scale = double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var l) && l >= 0 && double.IsFinite(l) ? l : throw new ArgumentException($"The {Where()} needs a guidance scale ≥ 0 (got '{value}')."); break;
                default: throw new ArgumentException($"Unknown {Where()}: kohya-ss' options are --n (negative prompt), --w, --h, --s (steps), --l (guidance scale) and --d (seed).");
            }
        }
        if (width is int w && w % 8 != 0) throw new ArgumentException($"--w {w} in the validation prompt '{line}' must be a multiple of 8.");
        if (height is int h && h % 8 != 0) throw new ArgumentException($"--h {h} in the validation prompt '{line}' must be a multiple of 8.");
        return new SamplePrompt(prompt, negative, width, height, steps, scale, seed);
    }
}
