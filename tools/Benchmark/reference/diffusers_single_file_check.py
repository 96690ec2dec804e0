"""Does a single-file checkpoint written by Export-DreamBoothCheckpoint load in diffusers? (a check by hand)

Usage: python3 diffusers_single_file_check.py FILE PIPELINE_DIR
FILE is the export of the diffusers folder PIPELINE_DIR (e.g. Export-DreamBoothCheckpoint -Model PIPELINE_DIR -Path
FILE, fp32). Loads the UNet and the VAE from FILE with diffusers' own from_single_file (its conversion of the original
LDM key layout; PIPELINE_DIR gives the configs, nothing is downloaded) and compares every tensor with the same model
loaded from PIPELINE_DIR by from_pretrained: an fp32 export must give them back bit for bit. The text encoder needs
transformers and is not checked here. Setup: see diffusers_checkpointing_ab.py.
"""
import sys

import torch

import torch_compat  # noqa: E402,F401  (before diffusers)

import safetensors.torch  # noqa: E402,F401  (diffusers' loader calls safetensors.torch without importing it)
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402

single_file, folder = sys.argv[1], sys.argv[2]
failures = 0
for component, cls in [("unet", UNet2DConditionModel), ("vae", AutoencoderKL)]:
    converted = cls.from_single_file(single_file, config=folder, subfolder=component, local_files_only=True).state_dict()
    original = cls.from_pretrained(folder, subfolder=component).state_dict()
    missing = sorted(set(original) - set(converted))
    extra = sorted(set(converted) - set(original))
    differing = [k for k in original if k in converted and not torch.equal(original[k], converted[k])]
    print(f"{component}: {len(converted)} tensors from the single file, {len(original)} in the folder; "
          f"missing {len(missing)}, unexpected {len(extra)}, not bit-identical {len(differing)}")
    for k in (missing + extra + differing)[:10]:
        print("   ", k)
    failures += len(missing) + len(extra) + len(differing)
    del converted, original
print("OK: the single file loads in diffusers and gives the folder's weights back bit for bit" if failures == 0 else f"{failures} problems")
sys.exit(1 if failures else 0)
