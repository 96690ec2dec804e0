"""What gradient checkpointing costs in diffusers itself, on this machine (a reference measurement, not a test).

Usage: python3 diffusers_checkpointing_ab.py step|unet [rounds=4] [plain|ckpt]
  step: a train_dreambooth.py-like step (batch 1, no prior, fp32, 512 px): VAE encode, DDPM add_noise, UNet forward,
        MSE loss, backward, grad-norm clipping at 1.0, torch AdamW (weight decay 1e-2); the text encoder is replaced by a
        fixed random context (transformers is not needed; it is ~0.1 s of a real step).
  unet: the UNet's forward + backward only.
Each round runs plain and unet.enable_gradient_checkpointing() once, in alternating order, after one warm-up step;
with a third argument only that variant runs (its own peak RSS). Random SD-1.4-shaped weights, 2 threads.

Setup used for docs/benchmarks.md (thirteenth pass), with no PyPI: Debian 12's python3-torch (1.13.1) and
libopenblas0-openmp, diffusers v0.32.2 and huggingface_hub v0.26.5 from their git tags on PYTHONPATH, and a stub
`safetensors` package (nothing is loaded from files). PyTorch 1.13 has no scaled_dot_product_attention, so diffusers
runs its explicit attention (AttnProcessor) there.
"""
import resource
import sys
import time

import torch

import torch_compat  # noqa: E402,F401  (before diffusers)

from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel  # noqa: E402

mode = sys.argv[1] if len(sys.argv) > 1 else "step"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
only = sys.argv[3] if len(sys.argv) > 3 else None
torch.set_num_threads(2)
torch.manual_seed(0)
unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8).train()
vae = AutoencoderKL(down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                    block_out_channels=[128, 256, 512, 512], layers_per_block=2, sample_size=512).eval()
vae.requires_grad_(False)
scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
optimizer = torch.optim.AdamW(unet.parameters(), lr=5e-6, weight_decay=1e-2)
image = torch.rand(1, 3, 512, 512) * 2 - 1
context = torch.randn(1, 77, 768)
print("attention processor:", type(unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.processor).__name__)


def run(checkpointing):
    if checkpointing:
        unet.enable_gradient_checkpointing()
    else:
        unet.disable_gradient_checkpointing()
    marks = [time.time()]
    if mode == "step":
        latents = vae.encode(image).latent_dist.sample() * 0.18215
    else:
        latents = torch.randn(1, 4, 64, 64)
    marks.append(time.time())
    noise = torch.randn_like(latents)
    timesteps = torch.randint(0, 1000, (1,))
    pred = unet(scheduler.add_noise(latents, noise, timesteps), timesteps, context).sample
    loss = torch.nn.functional.mse_loss(pred, noise)
    marks.append(time.time())
    loss.backward()
    marks.append(time.time())
    if mode == "step":
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
    optimizer.zero_grad(set_to_none=False)
    marks.append(time.time())
    vae_s, fwd, bwd, opt = (b - a for a, b in zip(marks, marks[1:]))
    return marks[-1] - marks[0], f"vae {vae_s:.2f} forward {fwd:.2f} backward {bwd:.2f} optimizer {opt:.2f}", loss.item()


print("warm-up: %.2f s (%s)" % run(only == "ckpt")[:2], flush=True)
for r in range(rounds):
    order = (only == "ckpt",) if only else ((False, True) if r % 2 == 0 else (True, False))
    for checkpointing in order:
        seconds, phases, loss = run(checkpointing)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(f"round {r + 1}: {'checkpointing' if checkpointing else 'plain':13} {seconds:6.2f} s ({phases}), "
              f"loss {loss:.4f}, peak RSS so far {peak:.2f} GB", flush=True)
