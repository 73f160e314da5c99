"""Reusable device scratch buffers.

A fresh device allocation on the CPU runtime is fresh memory: the first write to each
4 KiB page faults, which costs more than the copy itself (packing a 1 MiB matrix into a
new buffer: ~1 ms; ``dpnp.zeros`` of 1 MiB: 0.6 ms). Scratch that a function uses
internally is therefore kept per (name, queue) and reused while it is large enough.
Not thread-safe: xetile launches are synchronous and made from one thread.
"""
from __future__ import annotations

import numpy as np

_buffers: dict = {}


def scratch(name: str, count: int, dtype=np.float32, queue=None):
    """A flat dpnp array of at least ``count`` elements of ``dtype`` (contents undefined).

    The same ``name`` (and queue) returns the same memory on the next call, so a caller
    must be done with it before asking again.
    """
    import dpnp

    key = (name, np.dtype(dtype).str, queue)
    buf = _buffers.get(key)
    if buf is None or buf.size < count:
        buf = dpnp.empty(max(count, 1), dtype=dtype, sycl_queue=queue)
        _buffers[key] = buf
    return buf[:count]


def release() -> None:
    """Free every cached buffer."""
    _buffers.clear()
