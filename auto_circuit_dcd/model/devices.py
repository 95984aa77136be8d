"""Where a model runs and in what precision: device and dtype names, resolved with clear errors.

1. :func:`resolve_device`: ``"auto"`` (CUDA if available, else the CPU), ``"cpu"``,
   ``"cuda"`` / ``"cuda:N"``, ``"mps"`` or a ``torch.device``; asking for an accelerator
   that is not there is an error naming what is;
2. :func:`resolve_dtype`: ``"float32"``, ``"float16"``, ``"bfloat16"`` or a
   ``torch.dtype``;
3. :func:`model_device`: the device of a model's parameters, where batches and circuits
   must go.

Nothing here imports torch before it is needed, so the command line can list the choices
without loading it.
"""

from __future__ import annotations

from typing import Any

from auto_circuit_dcd.errors import ConfigError

__all__ = ["DEVICE_CHOICES", "DTYPE_CHOICES", "resolve_device", "resolve_dtype",
           "model_device"]

#: device names the command line offers (``cuda:N`` is also accepted here)
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
#: dtype names the command line offers; each is the ``torch`` attribute of that name
DTYPE_CHOICES = ("float32", "float16", "bfloat16")


def resolve_device(device: Any = "auto") -> Any:
    """A ``torch.device`` from a name; ``"auto"``: CUDA if available, else the CPU."""
    import torch

    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}: use one of {list(DEVICE_CHOICES)} "
                         "(or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but CUDA is not available here "
                             "(torch.cuda.is_available() is False): use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} asked for, but only "
                             f"{torch.cuda.device_count()} CUDA device(s) are visible")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"device {name!r} asked for, but Apple MPS is not available "
                             "here: use --device cpu or auto")
    elif dev.type not in ("cpu", "meta"):
        raise ConfigError(f"unknown device {device!r}: use one of {list(DEVICE_CHOICES)}")
    return dev


def resolve_dtype(dtype: Any = "float32") -> Any:
    """A ``torch.dtype`` from ``"float32"``, ``"float16"``, ``"bfloat16"`` or a dtype."""
    import torch

    if isinstance(dtype, torch.dtype):
        name = str(dtype).replace("torch.", "")
    else:
        name = str(dtype).strip().lower().replace("torch.", "")
    if name not in DTYPE_CHOICES:
        raise ConfigError(f"unsupported dtype {dtype!r}: use one of {list(DTYPE_CHOICES)}")
    return getattr(torch, name)


def model_device(model: Any) -> Any:
    """The device of a model's first parameter (the CPU for a model without any, or for an
    object that is not a module)."""
    import torch

    for p in getattr(model, "parameters", lambda: ())():
        return p.device
    return torch.device("cpu")
