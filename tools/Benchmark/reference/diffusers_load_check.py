"""Do the folders the engine writes load in diffusers? (a check by hand where PyTorch and diffusers are at hand)

Usage: python3 diffusers_load_check.py PIPELINE_DIR OUTDIR
Loads PIPELINE_DIR/unet and PIPELINE_DIR/vae (written by the engine: a training output, a checkpoint-N folder or the
benchmark's random SD-1.4 pipeline) with diffusers' own from_pretrained, checks that the file's tensor names are
exactly the model's parameter names (load_state_dict strict), then runs them on seeded inputs and writes
OUTDIR/engine-written/{reference.safetensors, unet -> PIPELINE_DIR/unet, vae -> ...}, so that
`dotnet run --project tools/Benchmark -- parity-fullsize OUTDIR` compares the engine's outputs on the same folders.
The text encoder needs transformers and is not checked here. Setup: see diffusers_checkpointing_ab.py.
"""
import os
import sys

import torch

import torch_compat  # noqa: E402,F401  (before diffusers)

import safetensors.torch  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402

from diffusers_fullsize_reference import write_safetensors  # noqa: E402  (this folder is on sys.path: it is the script's)

source, out = sys.argv[1], os.path.join(sys.argv[2], "engine-written")
os.makedirs(out, exist_ok=True)
torch.set_num_threads(2)
g = torch.Generator().manual_seed(2)
ref = {}
for component, cls in [("unet", UNet2DConditionModel), ("vae", AutoencoderKL)]:
    folder = os.path.join(source, component)
    model = cls.from_pretrained(folder).eval()
    weights = safetensors.torch.load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
    model.load_state_dict(weights, strict=True)  # raises on any missing or unexpected name, or a shape mismatch
    print(f"{component}: {len(weights)} tensors, names and shapes exactly diffusers' ({cls.__name__}.load_state_dict strict)")
    link = os.path.join(out, component)
    if not os.path.lexists(link):
        os.symlink(os.path.abspath(folder), link)
    with torch.no_grad():
        if component == "unet":
            size = model.config.sample_size if model.config.sample_size <= 64 else 64
            sample = torch.randn(1, model.config.in_channels, size, size, generator=g)
            context = torch.randn(1, 77, model.config.cross_attention_dim, generator=g)
            ref.update({"unet.sample": sample, "unet.encoder_hidden_states": context, "unet.timestep": torch.tensor([500.0]),
                        "unet.out": model(sample, torch.tensor([500]), context).sample})
        else:
            image = torch.rand(1, 3, 256, 256, generator=g) * 2 - 1
            latents = torch.randn(1, model.config.latent_channels, 32, 32, generator=g)
            posterior = model.encode(image).latent_dist
            ref.update({"vae.image": image, "vae.mean": posterior.mean, "vae.logvar": posterior.logvar,
                        "vae.latents": latents, "vae.decoded": model.decode(latents).sample})
    del model, weights
write_safetensors(os.path.join(out, "reference.safetensors"), ref)
print("wrote", out)
