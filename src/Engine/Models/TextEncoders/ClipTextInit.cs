using static TorchSharp.torch;

namespace DreamBooth.Engine.Models.TextEncoders;

/// <summary>transformers' <c>CLIPPreTrainedModel._init_weights</c> for the text tower (on a model just built).</summary>
internal static class ClipTextInit
{
    public static void InitWeights(ClipTextTransformer model, ClipTextConfig config)
    {
        using var _ = no_grad();
        double factor = config.InitializerFactor;
        int d = config.HiddenSize, layers = config.NumHiddenLayers;
        nn.init.normal_(model.Embeddings.TokenEmbedding.weight!, 0.0, factor * 0.02);
        nn.init.normal_(model.Embeddings.PositionEmbedding.weight!, 0.0, factor * 0.02);
        double attnInStd = Math.Pow(d, -0.5) * Math.Pow(2.0 * layers, -0.5) * factor;
        double attnOutStd = Math.Pow(d, -0.5) * factor;
        double fcStd = Math.Pow(2.0 * d, -0.5) * factor;
        foreach (var layer in model.Encoder.Layers)
        {
            var a = layer.SelfAttn;
            foreach (var proj in new[] { a.QProj, a.KProj, a.VProj }) { nn.init.normal_(proj.weight!, 0.0, attnInStd); proj.bias!.zero_(); }
            nn.init.normal_(a.OutProj.weight!, 0.0, attnOutStd); a.OutProj.bias!.zero_();
            nn.init.normal_(layer.Mlp.Fc1.weight!, 0.0, fcStd); layer.Mlp.Fc1.bias!.zero_();
            nn.init.normal_(layer.Mlp.Fc2.weight!, 0.0, attnInStd); layer.Mlp.Fc2.bias!.zero_();
        }
        // LayerNorms: weight 1, bias 0, as Layers.LayerNorm creates them.
    }
}
