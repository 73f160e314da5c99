"""Reusable device scratch buffers.

A fresh device allocation on the CPU runtime is fresh memory: the first write to each
4 KiB page faults, which costs more than the copy itself (packing a 1 MiB matrix into a
new buffer: ~1 ms; ``dpnp.zeros`` of 1 MiB: 0.6 ms). Scratch that a function uses
internally is therefore kept per (name, queue) and reused while it is large enough.
Not thread-safe: xetile launches are synchronous and made from one thread.
"""
from __future__ import annotations

import numpy as np

from xetile.launcher import Flat

_buffers: dict = {}


def scratch(name: str, count: int, dtype=np.float32, queue=None):
    """A flat dpnp array of ``count`` elements of ``dtype`` (contents undefined).

    The same ``name`` (and queue) returns the same memory on the next call, so a caller
    must be done with it before asking again.
    """
    return _buffer(name, count, dtype, queue)[:count]


def flat_scratch(name: str, count: int, dtype=np.float32, queue=None) -> Flat:
    """:func:`scratch` as a kernel argument only (:class:`xetile.launcher.Flat`): no
    dpnp view is made, which saves 10-20 us a buffer on every call."""
    return Flat(_buffer(name, count, dtype, queue), size=count)


def upload(name: str, host: np.ndarray, queue) -> Flat:
    """A copy of the host array ``host`` in the reusable buffer ``name``, as a flat kernel
    argument (one ``memcpy``: 22 us, against 56-84 us for ``dpnp.asarray`` of a small
    array, which allocates)."""
    host = np.ascontiguousarray(host)
    buf = _buffer(name, host.size, host.dtype, queue)
    if host.size:
        buf.sycl_queue.memcpy(buf.get_array().usm_data, host.view(np.uint8).reshape(-1),
                              host.nbytes)
    return Flat(buf, size=host.size)


def _buffer(name, count, dtype, queue):
    import dpnp

    key = (name, np.dtype(dtype).str, queue)
    buf = _buffers.get(key)
    if buf is None or buf.size < count:
        buf = dpnp.empty(max(count, 1), dtype=dtype, sycl_queue=queue)
        _buffers[key] = buf
    return buf


def release() -> None:
    """Free every cached buffer."""
    _buffers.clear()
