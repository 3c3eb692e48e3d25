"""4-bit base models (QLoRA): whether bitsandbytes can quantise on a device, and its config."""

from __future__ import annotations

from typing import Any

import torch

from ragft.errors import ConfigError


def require_4bit_support(device: torch.device) -> None:
    """Fail before any work unless bitsandbytes can quantise to 4 bits on `device`."""
    try:
        import bitsandbytes.functional as bnb_functional
    except ImportError as err:
        raise ConfigError(
            "adaptation.quantization",
            f"QLoRA needs bitsandbytes, which cannot be imported ({err}).",
            "Install it with `pip install bitsandbytes`, or pick another adaptation (e.g. lora).",
        ) from None
    try:  # probe the device with a real 4-bit round trip rather than guess from a support table
        weights = torch.ones(64, 64, device=device)
        packed, state = bnb_functional.quantize_4bit(weights, quant_type="nf4")
        bnb_functional.dequantize_4bit(packed, state)
    except Exception as err:  # noqa: BLE001 - any failure means the device is unsupported
        raise ConfigError(
            "adaptation.quantization",
            f"bitsandbytes cannot quantise to 4 bits on this {device.type} device ({type(err).__name__}: {err}).",
            "QLoRA needs a device bitsandbytes supports (a CUDA GPU, or a CPU with bitsandbytes >= 0.50); "
            "otherwise use adaptation=lora.",
        ) from None


def quantization_config(spec: Any, dtype: torch.dtype) -> Any:
    """A transformers BitsAndBytesConfig from `adaptation.quantization`, computing in `dtype`."""
    from hydra.utils import instantiate

    return instantiate(spec, bnb_4bit_compute_dtype=dtype, _convert_="all")
