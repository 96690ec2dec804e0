using DreamBooth.Engine.Models;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace DreamBooth.Engine.Training;

/// <summary>
/// Activation checkpointing like <c>torch.utils.checkpoint(fn, *inputs, use_reentrant=True)</c>: the forward runs
/// without keeping intermediates; backward runs <c>fn</c> again under grad and backpropagates through it.
/// Parameters captured by <c>fn</c> accumulate their grads during that recomputation.
/// <para>After every <c>loss.backward()</c> call <see cref="ThrowPendingError"/>: an exception inside a custom
/// backward would kill the process (it unwinds through a native callback), so it is caught, stashed and rethrown
/// there; that call also frees the gradients handed to libtorch by the last backward.</para>
/// <para><see cref="Run"/> has the shape <c>Func&lt;Func&lt;Tensor[],Tensor[]&gt;, Tensor[], Tensor[]&gt;</c>, so models
/// can take it as an injectable checkpoint runner.</para>
/// </summary>
public static class GradientCheckpoint
{

    /// <summary>Runs <paramref name="fn"/> on <paramref name="inputs"/> with checkpointing when grad is enabled.</summary>
    public static Tensor[] Run(Func<Tensor[], Tensor[]> fn, params Tensor[] inputs)
    {
        ArgumentNullException.ThrowIfNull(fn);
        ArgumentNullException.ThrowIfNull(inputs);
        if (!torch.is_grad_enabled())
            return fn(inputs);

        // apply() builds a graph node only when some tensor argument requires grad. When no input does, PyTorch's
        // reentrant checkpoint silently gives the captured parameters no grads; a dummy leaf that requires grad
        // keeps the node (and so the parameters' grads) without changing what fn sees.
        bool anyRequiresGrad = inputs.Any(t => t.requires_grad);
        Tensor? dummy = anyRequiresGrad ? null : torch.empty(0, requires_grad: true);
        try
        {
            var args = new object[inputs.Length + 2];
            args[0] = fn;
            args[1] = dummy is null ? 0 : 1;   // number of trailing dummy tensors
            for (int i = 0; i < inputs.Length; i++) args[i + 2] = inputs[i];
            if (dummy is not null) args = [.. args, dummy];
            return CheckpointFunction.apply(args).ToArray();
        }
        finally
        {
            dummy?.Dispose();
        }
    }

    /// <summary>
    /// <see cref="Run"/> whose recompute in backward runs in the autocast state of the forward
    /// (<see cref="MixedPrecision.ComputeDType"/> when called), as torch.utils.checkpoint restores autocast: backward
    /// runs after the forward's autocast scope has ended.
    /// </summary>
    public static Tensor[] RunInForwardAutocast(Func<Tensor[], Tensor[]> fn, params Tensor[] inputs)
    {
        var compute = MixedPrecision.ComputeDType;
        return Run(xs => { using var _ = MixedPrecision.Autocast(compute); return fn(xs); }, inputs);
    }

    /// <summary>
    /// Call after each <c>loss.backward()</c>, on the thread that ran the forward: releases the gradient tensors that the
    /// custom backwards of this thread's forwards handed back to libtorch, and rethrows (wrapped, original as
    /// InnerException) the first exception raised inside one of them (a checkpointed recompute, an fp32-arithmetic
    /// layer), if any (<see cref="AutogradCallbacks"/>).
    /// </summary>
    public static void ThrowPendingError()
    {
        var callbacks = AutogradCallbacks.Current;
        callbacks.ReleaseAll();
        var e = callbacks.TakePending();
        if (e is not null)
            throw new InvalidOperationException("Backward failed inside the engine's custom autograd (a checkpointed block's recompute or an fp32-arithmetic layer): " + e.Message, e);
    }

    /// <summary>True when a backward failure of this thread's forwards is waiting to be rethrown by <see cref="ThrowPendingError"/>.</summary>
    public static bool HasPendingError => AutogradCallbacks.Current.HasPending;

    /// <summary>The custom autograd function. <c>Function&lt;T&gt;</c> is a singleton: all per-call data lives in ctx.</summary>
    sealed class CheckpointFunction : MultiTensorFunction<CheckpointFunction>
    {
        public override string Name => nameof(CheckpointFunction);

        // vars: [fn, dummyCount, inputs..., dummies...]
        public override List<Tensor> forward(AutogradContext ctx, params object[] vars)
        {
            var fn = (Func<Tensor[], Tensor[]>)vars[0];
            int dummies = (int)vars[1];
            var inputs = vars.Skip(2).Take(vars.Length - 2 - dummies).Cast<Tensor>().ToArray();
            ctx.save_data("fn", fn);
            ctx.save_data("dummies", dummies);
            ctx.save_data("requires_grad", inputs.Select(t => t.requires_grad).ToArray());
            ctx.save_data("callbacks", AutogradCallbacks.Current);
            ctx.save_for_backward(inputs.ToList());

            using var scope = torch.NewDisposeScope();   // intermediates of fn are freed here, not kept for backward
            var outputs = fn(inputs);
            scope.MoveToOuter(outputs);
            return outputs.ToList();
        }

        public override List<Tensor> backward(AutogradContext ctx, List<Tensor> gradOutputs)
        {
            int dummies = (int)ctx.get_data("dummies");
            var requiresGrad = (bool[])ctx.get_data("requires_grad");
            var result = new List<Tensor>(2 + requiresGrad.Length + dummies) { null!, null! };   // fn, dummy count
            var callbacks = (AutogradCallbacks)ctx.get_data("callbacks");
            using var entered = callbacks.Enter();   // the recompute's own custom functions report to the same thread
            try
            {
                callbacks.ReleaseEarlierOnThisThread();
                var fn = (Func<Tensor[], Tensor[]>)ctx.get_data("fn");
                using var scope = torch.NewDisposeScope();
                scope.Attach(gradOutputs);
                var detached = ctx.get_saved_variables()
                    .Select((t, i) => t.detach().requires_grad_(requiresGrad[i])).ToArray();
                using (torch.enable_grad())
                {
                    var outputs = fn(detached);
                    var pairs = outputs.Zip(gradOutputs).Where(q => q.First.requires_grad).ToArray();
                    if (pairs.Length > 0)
                        torch.autograd.backward(pairs.Select(q => q.First).ToList(), pairs.Select(q => q.Second).ToList());
                }
                callbacks.AfterCheckpointBackward?.Invoke();   // this block's parameters have their gradients now
                foreach (var x in detached)
                {
                    var g = x.requires_grad ? x.grad : null;
                    if (g is not null) { scope.Detach(g); callbacks.HandBack(g); }
                    result.Add(g!);
                }
            }
            catch (Exception e)
            {
                callbacks.Stash(e);
                result = new List<Tensor> { null!, null! };
                for (int i = 0; i < requiresGrad.Length; i++) result.Add(null!);
            }
            for (int i = 0; i < dummies; i++) result.Add(null!);
            return result;
        }
    }
}
