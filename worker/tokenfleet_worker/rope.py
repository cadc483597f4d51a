"""Rotary position embeddings: inverse frequencies with the config's scaling, and their application."""

from __future__ import annotations

import math

import torch

from tokenfleet_worker.hf_config import ModelConfig


def rope_inverse_frequencies(config: ModelConfig) -> torch.Tensor:
    """float32 [head_dim / 2] inverse frequencies, with the config's RoPE scaling applied."""
    dim = config.head_dim
    scaling = config.rope_scaling
    base = config.rope_theta
    if scaling.rope_type == "dynamic":
        # Fixed NTK factor at the longest supported length (vLLM's choice): a cached key never
        # needs re-rotating when a sequence grows.
        original = scaling.original_max_position_embeddings or config.max_position_embeddings
        max_len = original * scaling.factor
        base = base * ((scaling.factor * max_len / original) - (scaling.factor - 1)) ** (dim / (dim - 2))
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    if scaling.rope_type == "linear":
        return inv_freq / scaling.factor
    if scaling.rope_type == "llama3":
        original = scaling.original_max_position_embeddings or config.max_position_embeddings
        low_wavelen = original / scaling.low_freq_factor
        high_wavelen = original / scaling.high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
        smooth = (original / wavelen - scaling.low_freq_factor) / (
            scaling.high_freq_factor - scaling.low_freq_factor
        )
        smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
        is_medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return torch.where(is_medium, smoothed, scaled)
    return inv_freq


def apply_rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin, with rotate_half's sign folded into `signed_sin` (three kernels)."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), signed_sin)
