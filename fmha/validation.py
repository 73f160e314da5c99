"""Host-side checks of every argument of :func:`fmha.attention`.

:func:`check_arguments` runs before anything touches the device. It raises

* ``TypeError`` when an argument has the wrong Python type, array kind or element
  dtype (``q: expected dtype float32, float16 or bfloat16 ..., got int64``);
* ``ValueError`` for everything else: ranks, shapes, values, and arguments missing,
  superfluous or inconsistent with each other;

and every message starts with the argument's name, then says what was expected and
what was given::

    page_table: expected int32 values in [0, num_pages=12) in the used entries, got 15 at [1, 2]

On success it returns a :class:`Problem`, the resolved problem the kernel launches on.

Accepted but worth knowing:

* NumPy arrays may be non-contiguous or negatively strided (the caller copies them to
  the device anyway). USM (dpnp / dpctl) arrays must be C-contiguous.
* ``page_table`` may be int64; it is converted to int32 by the caller. Only the entries
  ``page_table[b, :ceil(cache_seqlens[b] / page_size)]`` are read, so only they are
  checked; the rest may hold anything (e.g. -1 padding).
* Every other integer array (``cache_seqlens``, ``cu_seqlens_*``) must be int32.
* Sequences may be empty, and so may the batch (``B = 0``); the result is then empty.
* ``out`` must be C-contiguous, writable, of ``q``'s kind, queue, storage dtype and
  shape, and must not overlap any input.

USM metadata (``cu_seqlens_*``, ``cache_seqlens``, ``page_table``) is copied to the host
to check its values; these arrays are tiny.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Optional

import ml_dtypes
import numpy as np

from xetile import runtime as _runtime  # noqa: F401  (configures SYCL before dpctl loads)

__all__ = ["MAX_HEAD_DIM", "KV_LAYOUTS", "Problem", "check_arguments"]

MAX_HEAD_DIM = 256
KV_LAYOUTS = ("NHD", "HND")
FLOAT_DTYPES = ("float32", "float16", "bfloat16")
# Element types that may arrive as raw uint16 bits (dpnp has no bfloat16).
UINT16_DTYPES = ("bfloat16", "float16")

_BFLOAT16 = np.dtype(ml_dtypes.bfloat16)


@dataclass(frozen=True, eq=False)
class Problem:
    """A validated attention problem: sizes, resolved defaults, per-sequence lengths.

    The length arrays are read-only int64 ``[B]`` NumPy arrays on the host.
    """

    batch: int                       # B
    num_heads_q: int                 # Hq
    num_heads_kv: int                # Hkv; query head h reads KV head h // (Hq // Hkv)
    head_dim: int                    # D
    dtype: str                       # "float32", "float16" or "bfloat16" (the element type)
    varlen: bool                     # q packed as [total_q, Hq, D] with cu_seqlens_q
    seqlens_q: np.ndarray            # int64 [B], queries per sequence
    seqlens_kv_new: np.ndarray       # int64 [B], new keys per sequence (0 without k)
    cache_seqlens: np.ndarray        # int64 [B], cached keys per sequence (0 without cache)
    paged: bool                      # cache is a page pool addressed by page_table
    page_size: Optional[int]         # tokens per page (paged only)
    num_pages: Optional[int]         # pages in the pool (paged only)
    kv_layout: str                   # "NHD" or "HND" (of the cache)
    causal: bool
    softmax_scale: float             # resolved: 1 / sqrt(D) by default
    kind: str                        # "numpy" or "usm" (dpnp / dpctl arrays): the array kind
    has_new_kv: bool                 # k and v were given
    has_cache: bool                  # k_cache and v_cache were given
    max_pages_per_seq: Optional[int]  # page_table.shape[1] (paged only)
    cache_capacity: int              # S_cache, or max_pages_per_seq * page_size; 0 without
    storage_dtype: str               # dtype of the arrays as given: dtype, or "uint16"
    return_lse: bool
    queue: Any = None                # the arrays' dpctl.SyclQueue ("usm" only)
    page_table: Optional[np.ndarray] = None  # int64 [B, max_pages_per_seq], host copy (paged)

    @property
    def group_size(self) -> int:
        """Query heads per KV head, ``Hq // Hkv``."""
        return self.num_heads_q // self.num_heads_kv

    @property
    def seqlens_kv(self) -> np.ndarray:
        """int64 ``[B]``: keys each sequence attends over, ``L_b = cache + new``."""
        return self.cache_seqlens + self.seqlens_kv_new

    @property
    def total_q(self) -> int:
        return int(self.seqlens_q.sum())

    @property
    def max_seqlen_q(self) -> int:
        return int(self.seqlens_q.max(initial=0))

    @property
    def max_seqlen_kv(self) -> int:
        return int(self.seqlens_kv.max(initial=0))


def check_arguments(q, k, v, k_cache, v_cache, cache_seqlens, page_table, kv_layout,
                    cu_seqlens_q, cu_seqlens_kv, causal, softmax_scale, return_lse, out,
                    dtype) -> Problem:
    """Validate the arguments of :func:`fmha.attention` and resolve the problem.

    The parameters are those of :func:`fmha.attention`, in its order.

    Returns
    -------
    Problem

    Raises
    ------
    TypeError
        Wrong Python type, array kind (NumPy vs USM) or element dtype.
    ValueError
        Anything else; the message names the argument, the expectation and the value.

    Examples
    --------
    >>> import numpy as np
    >>> q = np.zeros((2, 3, 8, 64), np.float16)          # [B, Sq, Hq, D]
    >>> k = v = np.zeros((2, 5, 2, 64), np.float16)      # [B, Skv, Hkv, D]
    >>> p = check_arguments(q, k, v, None, None, None, None, "NHD", None, None,
    ...                     True, None, False, None, None)
    >>> p.batch, p.group_size, p.seqlens_kv.tolist(), p.softmax_scale
    (2, 4, [5, 5], 0.125)
    """
    arrays = {"q": q, "k": k, "v": v, "k_cache": k_cache, "v_cache": v_cache,
              "cache_seqlens": cache_seqlens, "page_table": page_table,
              "cu_seqlens_q": cu_seqlens_q, "cu_seqlens_kv": cu_seqlens_kv, "out": out}
    _check_flags(kv_layout, causal, return_lse)
    kind, queue = _check_kinds(arrays)
    elem_dtype = _check_element_dtypes(arrays, dtype)
    _check_presence(q, k, v, k_cache, v_cache, cache_seqlens, page_table, cu_seqlens_q,
                    cu_seqlens_kv)

    varlen = q.ndim == 3
    batch, num_heads_q, head_dim, seqlens_q = _check_q(q, cu_seqlens_q)
    shape = _Shapes(batch, num_heads_q, head_dim, varlen)

    seqlens_kv_new = np.zeros(batch, np.int64)
    if k is not None:
        seqlens_kv_new = _check_new_kv(k, v, cu_seqlens_kv, shape)

    cache = _check_cache(k_cache, v_cache, cache_seqlens, page_table, kv_layout, shape)

    if num_heads_q % shape.num_heads_kv:
        raise ValueError(f"q: expected Hq to be a multiple of Hkv={shape.num_heads_kv} "
                         f"(GQA), got Hq={num_heads_q}")
    if out is not None:
        _check_out(out, q, arrays)

    return Problem(
        batch=batch, num_heads_q=num_heads_q, num_heads_kv=shape.num_heads_kv,
        head_dim=head_dim, dtype=elem_dtype, varlen=varlen,
        seqlens_q=_frozen(seqlens_q), seqlens_kv_new=_frozen(seqlens_kv_new),
        cache_seqlens=_frozen(cache["seqlens"]), paged=page_table is not None,
        page_size=cache["page_size"], num_pages=cache["num_pages"], kv_layout=kv_layout,
        causal=bool(causal), softmax_scale=_resolve_scale(softmax_scale, head_dim),
        kind=kind, has_new_kv=k is not None, has_cache=k_cache is not None,
        max_pages_per_seq=cache["max_pages_per_seq"], cache_capacity=cache["capacity"],
        storage_dtype=np.dtype(q.dtype).name, return_lse=bool(return_lse), queue=queue,
        page_table=cache["table"])


# ---------------------------------------------------------------------- scalar arguments

def _check_flags(kv_layout, causal, return_lse):
    if not isinstance(kv_layout, str) or kv_layout not in KV_LAYOUTS:
        raise ValueError(f"kv_layout: expected 'NHD' or 'HND', got {kv_layout!r}")
    for name, value in (("causal", causal), ("return_lse", return_lse)):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")


def _resolve_scale(softmax_scale, head_dim) -> float:
    if softmax_scale is None:
        return 1.0 / math.sqrt(head_dim)
    if isinstance(softmax_scale, (bool, np.bool_)) or not isinstance(softmax_scale,
                                                                     numbers.Real):
        raise TypeError(f"softmax_scale: expected a real number or None, got "
                        f"{type(softmax_scale).__name__} {softmax_scale!r}")
    scale = float(softmax_scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"softmax_scale: expected a finite number > 0, got {scale!r}")
    return scale


# ------------------------------------------------------------------ kinds and dtypes

def _kind_of(x) -> Optional[str]:
    if isinstance(x, np.ndarray):
        return "numpy"
    if hasattr(x, "__sycl_usm_array_interface__"):
        return "usm"
    return None


def _check_kinds(arrays):
    """All arrays are NumPy, or all are USM arrays on one queue. Returns (kind, queue)."""
    kind = _kind_of(arrays["q"])
    if kind is None:
        raise TypeError(f"q: expected a numpy.ndarray or a dpnp / dpctl USM array, got "
                        f"{type(arrays['q']).__name__}")
    queue = arrays["q"].sycl_queue if kind == "usm" else None
    for name, x in arrays.items():
        if x is None or name == "q":
            continue
        this = _kind_of(x)
        if this is None:
            raise TypeError(f"{name}: expected a numpy.ndarray or a dpnp / dpctl USM array, "
                            f"got {type(x).__name__}")
        if this != kind:
            raise TypeError(f"{name}: expected a {_KIND_NAMES[kind]} like q (all arrays "
                            f"must be of one kind), got a {_KIND_NAMES[this]} "
                            f"({type(x).__name__})")
        if kind == "usm" and x.sycl_queue != queue:
            raise ValueError(f"{name}: expected an array on q's SYCL queue {queue!r}, got "
                             f"one on {x.sycl_queue!r} (copy it with "
                             f"dpnp.asarray(x, sycl_queue=q.sycl_queue))")
    if kind == "usm":
        for name, x in arrays.items():
            if x is not None and not x.flags.c_contiguous:
                raise ValueError(f"{name}: expected a C-contiguous USM array, got strides "
                                 f"{tuple(x.strides)} for shape {tuple(x.shape)} (copy it "
                                 f"with dpnp.ascontiguousarray)")
    return kind, queue


_KIND_NAMES = {"numpy": "numpy.ndarray", "usm": "dpnp / dpctl USM array"}


def _element_dtype(name, x) -> str:
    """The storage dtype name of a q/k/v/cache array, if it is one attention accepts."""
    dt = np.dtype(x.dtype)
    if dt in (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.uint16), _BFLOAT16):
        return dt.name
    raise TypeError(f"{name}: expected dtype float32, float16 or bfloat16 (or uint16 with "
                    f"dtype='bfloat16' / 'float16'), got {dt.name}")


def _check_element_dtypes(arrays, dtype) -> str:
    """q, k, v, caches and out share q's storage dtype; returns the element dtype name."""
    storage = _element_dtype("q", arrays["q"])
    for name in ("k", "v", "k_cache", "v_cache", "out"):
        x = arrays[name]
        if x is not None and np.dtype(x.dtype).name != storage:
            raise TypeError(f"{name}: expected dtype {storage} (the dtype of q), got "
                            f"{np.dtype(x.dtype).name}")
    if storage != "uint16":
        if dtype is not None:
            raise ValueError(f"dtype: expected None for {storage} arrays (dtype only names "
                             f"the element type of uint16 arrays), got {dtype!r}")
        return storage
    if dtype is None:
        raise ValueError("dtype: expected 'bfloat16' or 'float16' to say what the uint16 "
                         "arrays hold, got None")
    try:
        name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in UINT16_DTYPES:
        raise ValueError(f"dtype: expected 'bfloat16' or 'float16' for uint16 arrays, got "
                         f"{dtype!r}")
    return name


def _check_int_array(name, x, ndim, shape_text, allowed=("int32",)):
    if np.dtype(x.dtype).name not in allowed:
        extra = " (int64 is accepted and converted)" if "int64" in allowed else ""
        raise TypeError(f"{name}: expected dtype int32{extra}, got {np.dtype(x.dtype).name}")
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array {shape_text}, got shape "
                         f"{tuple(x.shape)}")


def _host(x) -> np.ndarray:
    """A NumPy copy of a (tiny) metadata array."""
    if isinstance(x, np.ndarray):
        return x
    import dpnp

    return dpnp.asnumpy(x)


# ---------------------------------------------------------------- argument combinations

def _check_presence(q, k, v, k_cache, v_cache, cache_seqlens, page_table, cu_seqlens_q,
                    cu_seqlens_kv):
    if (k is None) != (v is None):
        given, missing = ("k", "v") if v is None else ("v", "k")
        raise ValueError(f"{missing}: expected with {given} (new keys and values come "
                         f"together), got None")
    if (k_cache is None) != (v_cache is None):
        given, missing = ("k_cache", "v_cache") if v_cache is None else ("v_cache", "k_cache")
        raise ValueError(f"{missing}: expected with {given}, got None")
    if k is None and k_cache is None:
        raise ValueError("k: expected new keys (k, v), a cache (k_cache, v_cache) or both, "
                         "got neither")
    if page_table is not None and k_cache is None:
        raise ValueError("page_table: expected only with a paged cache (k_cache, v_cache), "
                         "got k_cache=None")
    if page_table is not None and cache_seqlens is None:
        raise ValueError("cache_seqlens: expected with page_table (a paged cache has no "
                         "default length), got None")
    if cache_seqlens is not None and k_cache is None:
        raise ValueError("cache_seqlens: expected only with a cache (k_cache, v_cache), "
                         "got k_cache=None")
    if q.ndim == 3 and cu_seqlens_q is None:
        raise ValueError(f"q: expected a 4-D array [B, Sq, Hq, D] (or 3-D [total_q, Hq, D] "
                         f"with cu_seqlens_q), got shape {tuple(q.shape)} without "
                         f"cu_seqlens_q")
    if q.ndim not in (3, 4):
        raise ValueError(f"q: expected a 4-D array [B, Sq, Hq, D] or a 3-D packed array "
                         f"[total_q, Hq, D], got shape {tuple(q.shape)}")
    if q.ndim == 4 and cu_seqlens_q is not None:
        raise ValueError(f"cu_seqlens_q: expected None for a 4-D (dense) q, got an array; "
                         f"packed q is 3-D [total_q, Hq, D] (q has shape {tuple(q.shape)})")
    if cu_seqlens_kv is not None and k is None:
        raise ValueError("cu_seqlens_kv: expected only with new keys (k, v), got k=None")
    if cu_seqlens_kv is not None and cu_seqlens_q is None:
        raise ValueError("cu_seqlens_kv: expected only with packed (varlen) q and "
                         "cu_seqlens_q, got a 4-D q")
    if k is not None and cu_seqlens_q is not None and cu_seqlens_kv is None:
        raise ValueError("cu_seqlens_kv: expected with varlen q and new keys k, got None")


# ------------------------------------------------------------------------------- shapes

@dataclass
class _Shapes:
    """Sizes fixed by q; ``num_heads_kv`` is set by the first of k / k_cache."""

    batch: int
    num_heads_q: int
    head_dim: int
    varlen: bool
    num_heads_kv: Optional[int] = None
    kv_heads_from: str = ""


def _check_offsets(name, cu, total, total_text, expected_len=None):
    """Validate a ``cu_seqlens`` array; return the per-sequence lengths (int64)."""
    _check_int_array(name, cu, 1, "[B + 1]")
    if expected_len is not None and cu.shape[0] != expected_len:
        raise ValueError(f"{name}: expected length B + 1 = {expected_len} (like "
                         f"cu_seqlens_q), got {cu.shape[0]}")
    if cu.shape[0] < 1:
        raise ValueError(f"{name}: expected length B + 1 >= 1, got an empty array")
    values = _host(cu).astype(np.int64)
    if values[0] != 0:
        raise ValueError(f"{name}: expected {name}[0] == 0, got {values[0]}")
    lengths = np.diff(values)
    if (lengths < 0).any():
        i = int(np.argmax(lengths < 0)) + 1
        raise ValueError(f"{name}: expected non-decreasing offsets, got {values[i - 1]} "
                         f"then {values[i]} at [{i}]")
    if values[-1] != total:
        raise ValueError(f"{name}: expected the last offset to equal {total_text}={total}, "
                         f"got {values[-1]}")
    return lengths


def _check_heads_and_dim(name, shape, num_heads, head_dim, shapes: _Shapes):
    if head_dim != shapes.head_dim:
        raise ValueError(f"{name}: expected head_dim D={shapes.head_dim} (the last axis of "
                         f"q), got {head_dim} (shape {tuple(shape)})")
    if shapes.num_heads_kv is None:
        if num_heads < 1:
            raise ValueError(f"{name}: expected at least one KV head, got Hkv=0 (shape "
                             f"{tuple(shape)})")
        shapes.num_heads_kv, shapes.kv_heads_from = num_heads, name
    elif num_heads != shapes.num_heads_kv:
        raise ValueError(f"{name}: expected Hkv={shapes.num_heads_kv} KV heads (like "
                         f"{shapes.kv_heads_from}), got {num_heads} (shape {tuple(shape)})")


def _check_batch(name, got, shapes: _Shapes, shape):
    if got != shapes.batch:
        raise ValueError(f"{name}: expected batch B={shapes.batch} (from q"
                         f"{' and cu_seqlens_q' if shapes.varlen else ''}), got {got} "
                         f"(shape {tuple(shape)})")


def _check_q(q, cu_seqlens_q):
    """Returns (B, Hq, D, seqlens_q)."""
    num_heads_q, head_dim = q.shape[-2], q.shape[-1]
    if not 1 <= head_dim <= MAX_HEAD_DIM:
        raise ValueError(f"q: expected head_dim D in [1, {MAX_HEAD_DIM}], got {head_dim} "
                         f"(shape {tuple(q.shape)})")
    if num_heads_q < 1:
        raise ValueError(f"q: expected at least one head, got Hq=0 (shape {tuple(q.shape)})")
    if q.ndim == 4:
        batch, seqlen = q.shape[0], q.shape[1]
        return batch, num_heads_q, head_dim, np.full(batch, seqlen, np.int64)
    seqlens = _check_offsets("cu_seqlens_q", cu_seqlens_q, q.shape[0], "q.shape[0] (total_q)")
    return len(seqlens), num_heads_q, head_dim, seqlens


def _check_new_kv(k, v, cu_seqlens_kv, shapes: _Shapes):
    """Returns the new-KV lengths, int64 [B]."""
    if shapes.varlen:
        if k.ndim != 3:
            raise ValueError(f"k: expected a 3-D packed array [total_kv, Hkv, D] with varlen "
                             f"q, got shape {tuple(k.shape)}")
    elif k.ndim != 4:
        raise ValueError(f"k: expected a 4-D array [B, Skv, Hkv, D] like q, got shape "
                         f"{tuple(k.shape)}")
    if tuple(v.shape) != tuple(k.shape):
        raise ValueError(f"v: expected the shape of k {tuple(k.shape)}, got {tuple(v.shape)}")
    _check_heads_and_dim("k", k.shape, k.shape[-2], k.shape[-1], shapes)
    if shapes.varlen:
        return _check_offsets("cu_seqlens_kv", cu_seqlens_kv, k.shape[0],
                              "k.shape[0] (total_kv)", expected_len=shapes.batch + 1)
    _check_batch("k", k.shape[0], shapes, k.shape)
    return np.full(shapes.batch, k.shape[1], np.int64)


def _check_cache(k_cache, v_cache, cache_seqlens, page_table, kv_layout, shapes: _Shapes):
    """Returns a dict: seqlens (int64 [B]), capacity, page_size, num_pages, max_pages_per_seq,
    table (the page table on the host, int64, or None)."""
    resolved = {"seqlens": np.zeros(shapes.batch, np.int64), "capacity": 0,
                "page_size": None, "num_pages": None, "max_pages_per_seq": None,
                "table": None}
    if k_cache is None:
        return resolved
    paged = page_table is not None
    if paged:
        layout = ("[num_pages, page_size, Hkv, D]" if kv_layout == "NHD"
                  else "[num_pages, Hkv, page_size, D]")
    else:
        layout = "[B, S_cache, Hkv, D]" if kv_layout == "NHD" else "[B, Hkv, S_cache, D]"
    if k_cache.ndim != 4:
        raise ValueError(f"k_cache: expected a 4-D array {layout} (kv_layout={kv_layout!r}"
                         f"{', paged' if paged else ''}), got shape {tuple(k_cache.shape)}")
    if tuple(v_cache.shape) != tuple(k_cache.shape):
        raise ValueError(f"v_cache: expected the shape of k_cache {tuple(k_cache.shape)}, "
                         f"got {tuple(v_cache.shape)}")
    lead, tokens = (k_cache.shape[0], k_cache.shape[1]) if kv_layout == "NHD" else (
        k_cache.shape[0], k_cache.shape[2])
    num_heads = k_cache.shape[2] if kv_layout == "NHD" else k_cache.shape[1]
    _check_heads_and_dim("k_cache", k_cache.shape, num_heads, k_cache.shape[3], shapes)

    if paged:
        num_pages, page_size = lead, tokens
        if page_size < 1:
            raise ValueError(f"k_cache: expected page_size >= 1 in {layout}, got shape "
                             f"{tuple(k_cache.shape)}")
        _check_int_array("page_table", page_table, 2, "[B, max_pages_per_seq]",
                         allowed=("int32", "int64"))
        _check_batch("page_table", page_table.shape[0], shapes, page_table.shape)
        max_pages = page_table.shape[1]
        capacity = max_pages * page_size
        capacity_text = (f"page_table has max_pages_per_seq={max_pages} pages of "
                         f"page_size={page_size}")
        resolved.update(page_size=page_size, num_pages=num_pages, max_pages_per_seq=max_pages)
    else:
        _check_batch("k_cache", lead, shapes, k_cache.shape)
        capacity, capacity_text = tokens, f"S_cache={tokens}"
    resolved["capacity"] = capacity

    if cache_seqlens is None:
        resolved["seqlens"] = np.full(shapes.batch, capacity, np.int64)
        return resolved
    _check_int_array("cache_seqlens", cache_seqlens, 1, "[B]")
    _check_batch("cache_seqlens", cache_seqlens.shape[0], shapes, cache_seqlens.shape)
    lengths = _host(cache_seqlens).astype(np.int64)
    bad = (lengths < 0) | (lengths > capacity)
    if bad.any():
        b = int(np.argmax(bad))
        raise ValueError(f"cache_seqlens: expected values in [0, {capacity}] "
                         f"({capacity_text}), got {lengths[b]} at [{b}]")
    resolved["seqlens"] = lengths

    if paged:
        table = _host(page_table).astype(np.int64)
        pages_used = -(-lengths // resolved["page_size"])            # ceil division
        used = np.arange(table.shape[1])[None, :] < pages_used[:, None]
        bad = used & ((table < 0) | (table >= resolved["num_pages"]))
        if bad.any():
            b, j = (int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"page_table: expected int32 values in [0, num_pages="
                             f"{resolved['num_pages']}) in the used entries "
                             f"[b, :ceil(cache_seqlens[b] / page_size)], got {table[b, j]} "
                             f"at [{b}, {j}]")
        resolved["table"] = _frozen(table)
    return resolved


# ----------------------------------------------------------------------------------- out

def _check_out(out, q, arrays):
    if tuple(out.shape) != tuple(q.shape):
        raise ValueError(f"out: expected the shape of q {tuple(q.shape)}, got "
                         f"{tuple(out.shape)}")
    if not out.flags.c_contiguous:
        raise ValueError(f"out: expected a C-contiguous array, got strides "
                         f"{tuple(out.strides)} for shape {tuple(out.shape)}")
    writable = getattr(out.flags, "writeable", getattr(out.flags, "writable", True))
    if not writable:
        raise ValueError("out: expected a writable array, got a read-only one")
    for name, x in arrays.items():
        if name != "out" and x is not None and _may_overlap(out, x):
            raise ValueError(f"out: expected memory not shared with any input, got an "
                             f"array overlapping {name}")


def _usm_byte_range(x):
    """``(lo, hi)`` byte addresses spanned by a USM array (``None`` when empty)."""
    if int(np.prod(x.shape)) == 0:
        return None
    sua = x.__sycl_usm_array_interface__
    itemsize = np.dtype(x.dtype).itemsize
    shape = sua["shape"]
    strides = sua.get("strides")
    if strides is None:                      # C-contiguous, in elements
        strides = [int(np.prod(shape[i + 1:])) for i in range(len(shape))]
    start = sua["data"][0] + sua.get("offset", 0) * itemsize
    lo = start + sum(min(0, (n - 1) * s) for n, s in zip(shape, strides)) * itemsize
    hi = start + (sum(max(0, (n - 1) * s) for n, s in zip(shape, strides)) + 1) * itemsize
    return lo, hi


def _may_overlap(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return bool(np.may_share_memory(a, b))
    ra, rb = _usm_byte_range(a), _usm_byte_range(b)
    return ra is not None and rb is not None and ra[0] < rb[1] and rb[0] < ra[1]


def _frozen(x) -> np.ndarray:
    x = np.array(x, dtype=np.int64)
    x.setflags(write=False)
    return x
