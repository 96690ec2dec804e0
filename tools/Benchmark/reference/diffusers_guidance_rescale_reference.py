"""Reference images for -GuidanceRescale (diffusers' guidance_rescale), made by diffusers itself.

Usage: python3 diffusers_guidance_rescale_reference.py TINY_SD_DIR PIPELINE_REFERENCE OUT.safetensors
diffusers' StableDiffusionPipeline on the tiny pipeline: 'a photo of sks dog' (the fixture's prompt embeddings, passed
as prompt_embeds), negative '', CFG 7.5, 5 steps, 64x64, seed 0, with guidance_rescale 0.7 and 0.0, for DDIM and
PNDM. Setup as diffusers_img2img_reference.py (diffusers 0.32.2 on Debian 12's PyTorch 1.13.1, stubs for the rest).
"""
import sys

import torch

import torch_compat  # noqa: E402,F401  (before diffusers)

import safetensors.torch  # noqa: E402
from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, UNet2DConditionModel  # noqa: E402
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline  # noqa: E402

model, pipeline_reference, out = sys.argv[1:4]
torch.set_num_threads(2)
unet = UNet2DConditionModel.from_pretrained(model + "/unet").eval()
vae = AutoencoderKL.from_pretrained(model + "/vae").eval()
embeds = safetensors.torch.load_file(pipeline_reference)
base = PNDMScheduler.from_pretrained(model + "/scheduler")
ref = {}
for cls in (DDIMScheduler, PNDMScheduler):
    for rescale in (0.7, 0.0):
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=cls.from_config(base.config),
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        with torch.no_grad():
            image = pipe(prompt_embeds=embeds["prompt_embeds"], negative_prompt_embeds=embeds["negative_prompt_embeds"],
                         guidance_scale=7.5, guidance_rescale=rescale, num_inference_steps=5, height=64, width=64,
                         generator=torch.Generator().manual_seed(0), output_type="np").images
        key = f"{cls.__name__}_r{int(rescale * 100)}"
        ref[key + ".image"] = torch.from_numpy(image)
        print(key, float(image.mean()))
safetensors.torch.save_file(ref, out, metadata={"generated_by": "tools/Benchmark/reference/diffusers_guidance_rescale_reference.py",
                                                "diffusers": "0.32.2", "torch": torch.__version__})
print("wrote", out)
