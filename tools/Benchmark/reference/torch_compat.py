"""Imported by the reference scripts before diffusers: diffusers 0.32 names dtypes at import that PyTorch 1.13 (the one
Debian 12 packages) lacks. They are only named, never used, on the paths these scripts take."""
import torch

for name in ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "uint16", "uint32", "uint64"]:
    if not hasattr(torch, name):
        setattr(torch, name, torch.float16)

# The pipeline module decorates a method with torch.compiler.disable (PyTorch 2.1+); as a no-op it changes nothing here.
if not hasattr(torch, "compiler"):
    import types

    torch.compiler = types.SimpleNamespace(disable=lambda fn=None, **kwargs: fn if fn is not None else (lambda f: f))
