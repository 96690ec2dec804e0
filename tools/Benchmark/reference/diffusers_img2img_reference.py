"""Reference tensors for image-to-image (Invoke-DreamBoothInference -InitImage/-Strength), made by diffusers itself.

Usage: python3 diffusers_img2img_reference.py TINY_SD_DIR INIT_PNG PIPELINE_REFERENCE OUT.safetensors
Runs diffusers' StableDiffusionImg2ImgPipeline on the tiny fixture pipeline (tests/fixtures/tiny-sd) with the init image
INIT_PNG, for several schedulers and strengths, and writes the images and the noised initial latents. The prompt
embeddings are the fixture's own (PIPELINE_REFERENCE = tests/fixtures/reference/pipeline/DDIMScheduler.safetensors:
'a photo of sks dog' and the empty negative prompt, computed by transformers), passed as prompt_embeds, so the script
needs no transformers. Setup as diffusers_checkpointing_ab.py: Debian 12's python3-torch (1.13.1), diffusers v0.32.2
and huggingface_hub v0.26.5 from their git tags on PYTHONPATH, a minimal `safetensors` reader/writer, and a `transformers`
package that only names the CLIP classes the pipeline module imports (none is used).
"""
import sys

import numpy as np
import torch
from PIL import Image

import torch_compat  # noqa: E402,F401  (before diffusers)

import safetensors.torch  # noqa: E402
from diffusers import (AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,  # noqa: E402
                       PNDMScheduler, UNet2DConditionModel)
# The module itself, not the package's name (a placeholder where transformers is missing); it names transformers'
# CLIP classes at import, which a names-only `transformers` stub on PYTHONPATH satisfies.
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import StableDiffusionImg2ImgPipeline  # noqa: E402

model, init_png, pipeline_reference, out = sys.argv[1:5]
torch.set_num_threads(2)
unet = UNet2DConditionModel.from_pretrained(model + "/unet").eval()
vae = AutoencoderKL.from_pretrained(model + "/vae").eval()
embeds = safetensors.torch.load_file(pipeline_reference)
init = Image.open(init_png).convert("RGB")
pixels = torch.from_numpy(np.asarray(init, dtype=np.float32) / 255.0).permute(2, 0, 1)[None] * 2 - 1

ref = {"init_image": pixels, "prompt_embeds": embeds["prompt_embeds"], "negative_prompt_embeds": embeds["negative_prompt_embeds"]}
cases = [("DDIMScheduler", DDIMScheduler, 10, 0.6), ("DDIMScheduler", DDIMScheduler, 10, 1.0),
         ("PNDMScheduler", PNDMScheduler, 10, 0.6), ("DPMSolverMultistepScheduler", DPMSolverMultistepScheduler, 10, 0.6),
         ("EulerDiscreteScheduler", EulerDiscreteScheduler, 10, 0.6)]
base = PNDMScheduler.from_pretrained(model + "/scheduler")
for name, cls, steps, strength in cases:
    scheduler = cls.from_config(base.config)
    pipe = StableDiffusionImg2ImgPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler,
                                          safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    key = f"{name}_s{int(strength * 100)}"
    with torch.no_grad():
        image = pipe(image=init, prompt_embeds=embeds["prompt_embeds"], negative_prompt_embeds=embeds["negative_prompt_embeds"],
                     strength=strength, num_inference_steps=steps, guidance_scale=7.5,
                     generator=torch.Generator().manual_seed(0), output_type="np").images
        # The noised initial latents, as the pipeline makes them (same scheduler state, a fresh generator of the same seed).
        scheduler.set_timesteps(steps)
        timesteps, _ = pipe.get_timesteps(steps, strength, "cpu")
        latents = pipe.prepare_latents(pipe.image_processor.preprocess(init), timesteps[:1], 1, 1, torch.float32, torch.device("cpu"),
                                       torch.Generator().manual_seed(0))
    ref[key + ".image"] = torch.from_numpy(image)
    ref[key + ".initial_latents"] = latents
    ref[key + ".timesteps"] = timesteps.to(torch.float32)
    print(key, "steps", len(timesteps), "first t", float(timesteps[0]), "image mean", float(image.mean()))
safetensors.torch.save_file(ref, out, metadata={"generated_by": "tools/Benchmark/reference/diffusers_img2img_reference.py",
                                                "diffusers": "0.32.2", "torch": torch.__version__})
print("wrote", out)
