"""Full-size parity references from diffusers itself (a check run by hand, not a test: the weights are GBs).

Usage: python3 diffusers_fullsize_reference.py OUTDIR
Writes, for an SD-1.4-shaped and an SD-2.1-shaped model (configs below, random weights from seed 0):
  OUTDIR/<case>/unet/{config.json,diffusion_pytorch_model.safetensors}, OUTDIR/<case>/vae/... (sd14 only),
  OUTDIR/<case>/reference.safetensors: the inputs and diffusers' outputs (UNet noise prediction at 64x64 latents;
  one MSE backward: loss, total gradient norm and the gradients of GRAD_PARAMETERS; VAE posterior mean / logvar of a
  256 px image and the decode of 32x32 latents).
Then `dotnet run --project tools/Benchmark -- parity-fullsize OUTDIR` loads the folders with the engine and compares.
Same setup as diffusers_checkpointing_ab.py (its docstring); the safetensors files are written here by hand (the
format is a JSON header and raw little-endian bytes), so the safetensors package is not needed.
"""
import json
import os
import struct
import sys

import torch

import torch_compat  # noqa: E402,F401  (before diffusers)

from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402

SD14_UNET = dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
SD21_UNET = dict(sample_size=96, cross_attention_dim=1024, attention_head_dim=[5, 10, 20, 20],
                 use_linear_projection=True, upcast_attention=True)
GRAD_PARAMETERS = ["conv_in.weight", "time_embedding.linear_1.weight",
                   "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
                   "down_blocks.1.resnets.0.conv_shortcut.weight",
                   "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
                   "up_blocks.1.attentions.2.proj_out.weight", "up_blocks.3.resnets.2.norm1.weight", "conv_out.weight"]
SD_VAE = dict(down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
              block_out_channels=[128, 256, 512, 512], layers_per_block=2, sample_size=512)


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for b in blobs:
            f.write(b)


def save_model(model, folder):
    os.makedirs(folder, exist_ok=True)
    config = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    config["_class_name"] = type(model).__name__
    config["_diffusers_version"] = "0.32.2"
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    write_safetensors(os.path.join(folder, "diffusion_pytorch_model.safetensors"), model.state_dict())


def randomize_norms(model, g):
    # Fresh models have GroupNorm/LayerNorm weight 1, bias 0: give them values so that a wrong affine would show.
    for m in model.modules():
        if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)) and m.weight is not None:
            m.weight.data = 1 + 0.1 * torch.randn(m.weight.shape, generator=g)
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=g)


def main(out):
    torch.set_num_threads(2)
    for case, unet_config, with_vae in [("sd14", SD14_UNET, True), ("sd21", SD21_UNET, False)]:
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(1)
        unet = UNet2DConditionModel(**unet_config).eval()
        randomize_norms(unet, g)
        save_model(unet, os.path.join(out, case, "unet"))
        sample = torch.randn(1, 4, 64, 64, generator=g)
        context = torch.randn(1, 77, unet_config["cross_attention_dim"], generator=g)
        timestep = torch.tensor([500])
        ref = {"unet.sample": sample, "unet.encoder_hidden_states": context, "unet.timestep": timestep.float()}
        with torch.no_grad():
            ref["unet.out"] = unet(sample, timestep, context).sample
        # One training backward (MSE against a fixed target): the loss, the total gradient norm and a few gradients.
        target = torch.randn(sample.shape, generator=g)
        loss = torch.nn.functional.mse_loss(unet.train()(sample, timestep, context).sample, target)
        loss.backward()
        params = dict(unet.named_parameters())
        ref.update({"unet.target": target, "unet.loss": loss.detach().reshape(1),
                    "unet.grad_norm": torch.stack([p.grad.pow(2).sum() for p in params.values()]).sum().sqrt().reshape(1)})
        ref.update({"unet.grad." + name: params[name].grad for name in GRAD_PARAMETERS})
        del unet, params
        if with_vae:
            vae = AutoencoderKL(**SD_VAE).eval()
            randomize_norms(vae, g)
            save_model(vae, os.path.join(out, case, "vae"))
            image = torch.rand(1, 3, 256, 256, generator=g) * 2 - 1
            latents = torch.randn(1, 4, 32, 32, generator=g)
            with torch.no_grad():
                posterior = vae.encode(image).latent_dist
                ref.update({"vae.image": image, "vae.mean": posterior.mean, "vae.logvar": posterior.logvar,
                            "vae.latents": latents, "vae.decoded": vae.decode(latents).sample})
        write_safetensors(os.path.join(out, case, "reference.safetensors"), ref)
        print(case, {k: tuple(v.shape) for k, v in ref.items()}, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
