namespace DreamBooth.Engine.Training;

/// <summary>
/// kohya-ss' caption processing (its dataset's <c>process_caption</c>): a caption of comma-separated tags may be dropped
/// whole (<c>--caption_dropout_rate</c>, <c>--caption_dropout_every_n_epochs</c>: the model also learns the empty prompt
/// that classifier-free guidance starts from), have its tags shuffled (<c>--shuffle_caption</c>) past the first
/// <c>--keep_tokens</c> (or the part before <c>--keep_tokens_separator</c>, and after its second occurrence), and lose
/// single tags (<c>--caption_tag_dropout_rate</c>). Applied to instance prompts each time an image is drawn; the class
/// prompt of prior preservation stays as it is. Random choices come from the trainer's serialisable generator, so a
/// resumed run draws the same captions.
/// </summary>
public sealed record CaptionAugmentation
{
    public bool Shuffle { get; init; }
    /// <summary>Tags at the front that stay in place and are never dropped.</summary>
    public int KeepTokens { get; init; }
    /// <summary>Where set and present: the fixed part ends here (and a second occurrence starts a fixed suffix).</summary>
    public string? KeepTokensSeparator { get; init; }
    public double DropoutRate { get; init; }
    public double TagDropoutRate { get; init; }
    /// <summary>Every Nth epoch (counted from 1, as kohya) trains all its captions empty; 0: never.</summary>
    public int DropoutEveryNEpochs { get; init; }

    public static CaptionAugmentation For(DreamBoothOptions o) => new()
    {
        Shuffle = o.ShuffleCaption, KeepTokens = o.KeepTokens, KeepTokensSeparator = o.KeepTokensSeparator,
        DropoutRate = o.CaptionDropoutRate, TagDropoutRate = o.CaptionTagDropoutRate, DropoutEveryNEpochs = o.CaptionDropoutEveryNEpochs,
    };

    /// <summary>Whether captions change from one draw to the next (the prompts' embeddings cannot be computed once).</summary>
    public bool IsActive => Shuffle || DropoutRate > 0 || TagDropoutRate > 0 || DropoutEveryNEpochs > 0;

    /// <summary>The caption an image trains with this time; <paramref name="epoch"/> counts from 0.</summary>
    public string Apply(string caption, int epoch, Pcg32 random)
    {
        bool drop = DropoutRate > 0 && random.NextDouble() < DropoutRate;
        if (drop || (DropoutEveryNEpochs > 0 && (epoch + 1) % DropoutEveryNEpochs == 0)) return "";
        if (!Shuffle && TagDropoutRate <= 0) return caption;

        List<string> fixedTags, flexTags, fixedSuffix = new();
        if (!string.IsNullOrEmpty(KeepTokensSeparator) && caption.Contains(KeepTokensSeparator, StringComparison.Ordinal))
        {
            var parts = caption.Split(KeepTokensSeparator, 3);
            fixedTags = Tags(parts[0]);
            flexTags = Tags(parts[1]);
            if (parts.Length == 3) fixedSuffix = Tags(parts[2]);
        }
        else
        {
            var tags = Tags(caption);
            int keep = Math.Min(KeepTokens, tags.Count);
            fixedTags = tags.Take(keep).ToList();
            flexTags = tags.Skip(keep).ToList();
        }
        if (Shuffle) random.Shuffle(flexTags);
        if (TagDropoutRate > 0) flexTags = flexTags.Where(_ => random.NextDouble() >= TagDropoutRate).ToList();
        return string.Join(", ", fixedTags.Concat(flexTags).Concat(fixedSuffix));
    }

    static List<string> Tags(string text) => text.Split(',').Select(t => t.Trim()).Where(t => t.Length > 0).ToList();
}
