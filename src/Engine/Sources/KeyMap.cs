using TorchSharp;
using static TorchSharp.torch;

namespace DreamBooth.Engine.Sources;

/// <summary>
/// A component's diffusers ↔ LDM renaming, as longest-prefix rules. Both directions use the same rules, so an
/// export followed by an import gives back the same names and the same bits.
/// </summary>
public sealed class KeyMap
{
    public IReadOnlyList<KeyRule> Rules { get; }
    /// <summary>The component's prefix in the single file, e.g. <c>model.diffusion_model.</c>.</summary>
    public string LdmPrefix { get; }

    public KeyMap(string ldmPrefix, IEnumerable<KeyRule> rules)
    {
        LdmPrefix = ldmPrefix;
        Rules = rules.ToList();
    }

    static bool Matches(string key, string prefix)
        => key.StartsWith(prefix, StringComparison.Ordinal)
           && (key.Length == prefix.Length || prefix.EndsWith('.') || prefix.EndsWith('_'));

    /// <summary>The rule for a diffusers key (longest matching prefix), or null.</summary>
    public KeyRule? RuleForDiffusers(string key)
        => Rules.Where(r => Matches(key, r.Diffusers)).MaxBy(r => r.Diffusers.Length);

    /// <summary>The rules for an LDM key without the component prefix (several for a fused q/k/v), or none.</summary>
    public IReadOnlyList<KeyRule> RulesForLdm(string key)
    {
        var hits = Rules.Where(r => Matches(key, r.Ldm)).ToList();
        if (hits.Count == 0) return hits;
        int longest = hits.Max(r => r.Ldm.Length);
        return hits.Where(r => r.Ldm.Length == longest).ToList();
    }

    /// <summary>The full single-file name of a diffusers key, or null when no rule covers it.</summary>
    public string? LdmKeyOf(string diffusersKey)
    {
        var r = RuleForDiffusers(diffusersKey);
        return r is null ? null : LdmPrefix + r.Ldm + diffusersKey[r.Diffusers.Length..];
    }

    /// <summary>The diffusers names of a full single-file key (three for a fused in_proj), empty when unknown.</summary>
    public IReadOnlyList<string> DiffusersKeysOf(string ldmKey)
    {
        if (!ldmKey.StartsWith(LdmPrefix, StringComparison.Ordinal)) return Array.Empty<string>();
        var local = ldmKey[LdmPrefix.Length..];
        return RulesForLdm(local).OrderBy(r => r.Transform).Select(r => r.Diffusers + local[r.Ldm.Length..]).ToList();
    }

    /// <summary>Renames a diffusers state dict into the LDM layout. A key no rule covers is an error: an export must not drop weights.</summary>
    public Dictionary<string, Tensor> ToLdm(IReadOnlyDictionary<string, Tensor> diffusers)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var fused = new Dictionary<string, Tensor?[]>(StringComparer.Ordinal);
        foreach (var (key, t) in diffusers)
        {
            var rule = RuleForDiffusers(key)
                ?? throw new ModelSourceException($"No LDM name is known for the diffusers tensor '{key}' (component '{LdmPrefix}'); the model does not have the Stable Diffusion 1.x/2.x layout.");
            var name = LdmPrefix + rule.Ldm + key[rule.Diffusers.Length..];
            switch (rule.Transform)
            {
                case TensorTransform.LinearToConv1x1 when t.dim() == 2:
                    result[name] = t.reshape(t.shape[0], t.shape[1], 1, 1);
                    break;
                case TensorTransform.QkvSliceQ or TensorTransform.QkvSliceK or TensorTransform.QkvSliceV:
                    if (!fused.TryGetValue(name, out var parts)) fused[name] = parts = new Tensor?[3];
                    parts[rule.Transform - TensorTransform.QkvSliceQ] = t;
                    break;
                default:
                    result[name] = t;
                    break;
            }
        }
        foreach (var (name, parts) in fused)
        {
            if (parts.Any(p => p is null)) throw new ModelSourceException($"'{name}' needs the q, k and v projections, but one is missing.");
            result[name] = torch.cat(parts!, 0);
        }
        return result;
    }

    /// <summary>
    /// Renames this component's single-file tensors into diffusers names. Keys under the prefix that no rule covers
    /// are returned in <paramref name="ignored"/> (e.g. <c>position_ids</c>, OpenCLIP's <c>text_projection</c>).
    /// </summary>
    public Dictionary<string, Tensor> ToDiffusers(IReadOnlyDictionary<string, Tensor> ldm, List<string> ignored)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, t) in ldm)
        {
            if (!name.StartsWith(LdmPrefix, StringComparison.Ordinal)) continue;
            var local = name[LdmPrefix.Length..];
            var rules = RulesForLdm(local);
            if (rules.Count == 0) { ignored.Add(name); continue; }
            foreach (var rule in rules)
            {
                var key = rule.Diffusers + local[rule.Ldm.Length..];
                result[key] = rule.Transform switch
                {
                    TensorTransform.LinearToConv1x1 when t.dim() == 4 => t.reshape(t.shape[0], t.shape[1]),
                    TensorTransform.QkvSliceQ or TensorTransform.QkvSliceK or TensorTransform.QkvSliceV
                        => t.chunk(3, 0)[rule.Transform - TensorTransform.QkvSliceQ].contiguous(),
                    _ => t,
                };
            }
        }
        return result;
    }
}
