"""Reference tensors for inpainting (Invoke-DreamBoothInference -InitImage -MaskImage), made by diffusers itself.

Usage: python3 diffusers_inpaint_reference.py TINY_SD_DIR INIT_PNG PIPELINE_REFERENCE OUT_DIR
Writes OUT_DIR/mask.png (a 96x80 mask: a white rectangle, grey values either side of the 0.5 threshold, a red and a
green patch, so that PIL's grey conversion and the binarisation are exercised), OUT_DIR/unet-inpaint (the tiny UNet
made a 9-input-channel inpainting UNet: its weights, and a conv_in of 9 channels drawn with torch.manual_seed(1)), and
OUT_DIR/inpaint.safetensors: diffusers' StableDiffusionInpaintPipeline on the tiny pipeline, with the regular UNet
(latents blended back outside the mask each step) and with the inpainting one, for several schedulers and strengths.
Setup as diffusers_img2img_reference.py (diffusers 0.32.2 on Debian 12's PyTorch 1.13.1; prompt embeddings passed in).
"""
import os
import sys

import numpy as np
import torch
from PIL import Image

import torch_compat  # noqa: E402,F401  (before diffusers)

import safetensors.torch  # noqa: E402
from diffusers import (AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,  # noqa: E402
                       PNDMScheduler, UNet2DConditionModel)
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint import StableDiffusionInpaintPipeline  # noqa: E402

model, init_png, pipeline_reference, out = sys.argv[1:5]
torch.set_num_threads(2)
os.makedirs(out, exist_ok=True)

mask = np.zeros((80, 96, 3), dtype=np.uint8)
mask[16:64, 24:72] = 255          # paint anew
mask[16:64, 20:22] = 128          # 128/255 >= 0.5: painted
mask[16:64, 22:24] = 127          # 127/255 < 0.5: kept
mask[66:74, 8:20] = (255, 0, 0)   # red: grey 76, kept
mask[66:74, 76:88] = (0, 255, 0)  # green: grey 150, painted
Image.fromarray(mask).save(os.path.join(out, "mask.png"))

unet = UNet2DConditionModel.from_pretrained(model + "/unet").eval()
config = dict(unet.config)
config["in_channels"] = 9
torch.manual_seed(1)
inpaint_unet = UNet2DConditionModel.from_config(config).eval()
weights = {k: v for k, v in unet.state_dict().items() if k != "conv_in.weight"}
missing, unexpected = inpaint_unet.load_state_dict(weights, strict=False)
assert missing == ["conv_in.weight"] and not unexpected, (missing, unexpected)
inpaint_unet.save_pretrained(os.path.join(out, "unet-inpaint"), safe_serialization=True)

vae = AutoencoderKL.from_pretrained(model + "/vae").eval()
embeds = safetensors.torch.load_file(pipeline_reference)
init = Image.open(init_png).convert("RGB")
mask_image = Image.open(os.path.join(out, "mask.png"))
base = PNDMScheduler.from_pretrained(model + "/scheduler")
ref = {}
cases = [("regular", unet, DDIMScheduler, 1.0), ("regular", unet, DDIMScheduler, 0.6),
         ("regular", unet, EulerDiscreteScheduler, 0.6), ("regular", unet, DPMSolverMultistepScheduler, 0.6),
         ("inpainting", inpaint_unet, DDIMScheduler, 1.0), ("inpainting", inpaint_unet, EulerDiscreteScheduler, 0.6)]
for kind, model_unet, cls, strength in cases:
    scheduler = cls.from_config(base.config)
    pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=model_unet, scheduler=scheduler,
                                          safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    key = f"{kind}_{cls.__name__}_s{int(strength * 100)}"
    with torch.no_grad():
        image = pipe(image=init, mask_image=mask_image, height=80, width=96, prompt_embeds=embeds["prompt_embeds"],
                     negative_prompt_embeds=embeds["negative_prompt_embeds"], strength=strength, num_inference_steps=10,
                     guidance_scale=7.5, generator=torch.Generator().manual_seed(0), output_type="np").images
    ref[key + ".image"] = torch.from_numpy(image)
    if key == "regular_DDIMScheduler_s100":
        ref["mask"] = pipe.mask_processor.preprocess(mask_image, height=80, width=96)
    print(key, "image mean", float(image.mean()))
safetensors.torch.save_file(ref, os.path.join(out, "inpaint.safetensors"),
                            metadata={"generated_by": "tools/Benchmark/reference/diffusers_inpaint_reference.py",
                                      "diffusers": "0.32.2", "torch": torch.__version__})
print("wrote", out)
