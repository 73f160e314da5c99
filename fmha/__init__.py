"""fmha: flash-attention forward with a KV cache and a paged KV cache, as SYCL kernels.

>>> import numpy as np, fmha
>>> q = np.random.rand(1, 5, 4, 64).astype(np.float32)     # [B, Sq, Hq, D]
>>> k = v = np.random.rand(1, 7, 2, 64).astype(np.float32)  # [B, Skv, Hkv, D]
>>> fmha.attention(q, k, v, causal=True).shape
(1, 5, 4, 64)
"""
from xetile import runtime as _runtime  # noqa: F401  (sets up the SYCL runtime first)

from fmha.interface import attention

__all__ = ["attention"]
