"""Random attention problems, the tolerance table and comparison helpers.

Shared by the test grid, the fuzz test, the CLI runner and the benchmarks::

    from tests.problems import make_problem, check_against_reference
    kwargs = make_problem(batch=3, seqlens_q=[5, 0, 9], seqlens_kv=[2, 2, 0],
                          cache_seqlens=[17, 0, 4], num_heads_q=8, num_heads_kv=2,
                          head_dim=64, dtype="bfloat16", varlen=True, paged=True,
                          page_size=7, causal=True, seed=1)
    out, lse = fmha.attention(**kwargs, return_lse=True)
    check_against_reference(kwargs, out, lse)

:func:`make_problem` returns the keyword arguments of :func:`fmha.attention` as NumPy
arrays, deterministic from ``seed``. By default it plants NaN *canaries* wherever a
correct kernel must not read: pool pages no used page-table entry points at, the slots
of a sequence's last page (or of a contiguous cache) past ``cache_seqlens``. A NaN that
reaches the output means an out-of-range read that was not masked.

:func:`to_device` moves a problem onto the SYCL device as dpnp arrays (bfloat16 becomes
``uint16`` bits plus ``dtype="bfloat16"``), :func:`to_numpy` brings a result back.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Union

import ml_dtypes
import numpy as np

from fmha.reference import attention_reference

__all__ = [
    "DTYPES", "FAST_HEAD_DIMS", "TOLERANCES", "Tolerance", "as_float64",
    "assert_close", "check_against_reference", "describe", "dtype_name", "make_problem",
    "sequence_rows", "take_sequence", "to_device", "to_numpy",
]

DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}

# The kernel compiles once per (dtype, head_dim), ~1-3 s each: quick tests stick to these.
FAST_HEAD_DIMS = (16, 64)


class Tolerance(NamedTuple):
    """Allowed ``|got - ref| <= atol + rtol * |ref|`` for ``out`` and for ``lse``."""

    atol: float
    rtol: float
    lse_atol: float
    lse_rtol: float


# Per input dtype, for standard normal q, k, v and scores |scale * q.k| = O(1).
# ``out`` is rounded to the input dtype (half an ulp: 2**-11 fp16, 2**-8 bf16 relative)
# (the kernel may also round P to it before P @ V). Measured max |err| of the kernel over
# 60 random problems per dtype (D 16..256, L < 360, scale (0.05..2)/sqrt(D)): 3.3e-6 fp32,
# 9.0e-4 fp16, 7.5e-3 bf16; lse (float32 for every dtype) 2.4e-6. The table leaves a
# margin of >= 2x. Larger scores are ill-conditioned: a float32 score s carries a
# rounding error ~1e-7 |s|, so the fp32 error grew to 2.6e-5 at D=256 with scores
# spread ~28. Compare such cases on inputs whose scores are exact integers
# (test_hardening.test_huge_and_tiny_logits) rather than widening the table.
TOLERANCES = {
    "float32": Tolerance(atol=2e-5, rtol=2e-5, lse_atol=1e-5, lse_rtol=1e-5),
    "float16": Tolerance(atol=2e-3, rtol=2e-3, lse_atol=1e-5, lse_rtol=1e-5),
    "bfloat16": Tolerance(atol=1.6e-2, rtol=1.6e-2, lse_atol=1e-5, lse_rtol=1e-5),
}

IntOrList = Union[int, Sequence[int]]


def dtype_name(x) -> str:
    """``"float32"``, ``"float16"`` or ``"bfloat16"`` for an array, dtype or name."""
    dtype = np.dtype(x.dtype if hasattr(x, "dtype") else x)
    if dtype.name not in DTYPES:
        raise ValueError(f"not an attention dtype: {dtype.name}")
    return dtype.name


def _per_sequence(name, lengths, batch):
    """``lengths`` (an int, or one int per sequence) as a list of ``batch`` ints."""
    if np.isscalar(lengths):
        lengths = [int(lengths)] * batch
    lengths = [int(n) for n in lengths]
    if len(lengths) != batch:
        raise ValueError(f"{name}: expected {batch} lengths (batch={batch}), got {lengths}")
    if min(lengths, default=0) < 0:
        raise ValueError(f"{name}: lengths must be >= 0, got {lengths}")
    return lengths


def _offsets(lengths):
    """Packed-sequence offsets ``[0, l0, l0 + l1, ...]`` as int32 ``[B + 1]``."""
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)


def make_problem(*, batch: Optional[int] = None, seqlens_q: IntOrList = 1,
                 seqlens_kv: Optional[IntOrList] = None,
                 cache_seqlens: Optional[IntOrList] = None,
                 num_heads_q: int = 4, num_heads_kv: Optional[int] = None,
                 head_dim: int = 64, dtype: str = "float32", varlen: bool = False,
                 paged: bool = False, page_size: int = 16, kv_layout: str = "NHD",
                 spare_pages: int = 2, shuffle_pages: bool = True,
                 page_table_padding: int = 1, page_table_fill: Union[int, str] = -1,
                 cache_padding: int = 3, canaries: bool = True, causal: bool = False,
                 softmax_scale: Optional[float] = None, seed: int = 0) -> dict:
    """Random inputs for one attention configuration, as ``fmha.attention`` kwargs.

    Parameters
    ----------
    batch : int, optional
        Number of sequences ``B``. Inferred from the first list among the lengths;
        default 1 when every length is an int.
    seqlens_q : int or sequence of int
        Queries per sequence (one int: the same for all). May be 0.
    seqlens_kv : int or sequence of int, optional
        New keys per sequence. ``None``: no ``k``/``v`` argument at all; 0: ``k``, ``v``
        given but empty.
    cache_seqlens : int or sequence of int, optional
        Cached tokens per sequence. ``None``: no cache argument at all.
    num_heads_q, num_heads_kv : int
        ``Hq`` and ``Hkv`` (default ``Hkv = Hq``); ``Hq`` must be a multiple of ``Hkv``.
    head_dim : int
        ``D``.
    dtype : {"float32", "float16", "bfloat16"}
        Element type of q, k, v and the cache (bfloat16: ``ml_dtypes.bfloat16``).
    varlen : bool
        Pack ``q`` as ``[total_q, Hq, D]`` with ``cu_seqlens_q`` (and ``k``, ``v`` with
        ``cu_seqlens_kv``). When False every sequence must have the same ``seqlens_q``
        and the same ``seqlens_kv``.
    paged : bool
        Put the cache in a page pool addressed by ``page_table``.
    page_size : int
        Tokens per page (any value >= 1).
    kv_layout : {"NHD", "HND"}
        Cache layout: contiguous ``[B, S_cache, Hkv, D]`` / ``[B, Hkv, S_cache, D]``,
        paged ``[num_pages, page_size, Hkv, D]`` / ``[num_pages, Hkv, page_size, D]``.
    spare_pages : int
        Pool pages no sequence uses (NaN with ``canaries``).
    shuffle_pages : bool
        Hand out pool pages in a random order instead of 0, 1, 2, ...
    page_table_padding : int
        Extra page-table columns beyond the longest sequence's pages.
    page_table_fill : int or "spare"
        What unused page-table entries hold: an int (default -1: they are never read,
        so need not be valid), or ``"spare"``: random spare pages, so a kernel that
        follows an unused entry reads NaN instead of faulting (needs ``spare_pages``).
    cache_padding : int
        Contiguous cache: slots after the longest sequence, ``S_cache = max + padding``.
    canaries : bool
        Fill every slot a correct kernel must not read with NaN; otherwise with random
        finite values.
    causal : bool
        Passed through as ``causal``.
    softmax_scale : float, optional
        Passed through when given.
    seed : int
        Seeds :func:`numpy.random.default_rng`; the same arguments and seed give the
        same arrays.

    Returns
    -------
    dict
        Keyword arguments for ``fmha.attention`` and ``attention_reference``: ``q`` and
        ``causal`` always; ``k``, ``v`` with new KV; ``k_cache``, ``v_cache``,
        ``cache_seqlens`` (int32 ``[B]``, always passed) and ``kv_layout`` with a cache;
        ``page_table`` (int32 ``[B, max_pages_per_seq]``) when paged;
        ``cu_seqlens_q`` (and ``cu_seqlens_kv`` with new KV) int32 ``[B + 1]`` when
        varlen; ``softmax_scale`` when given.

    Examples
    --------
    >>> kw = make_problem(batch=2, seqlens_q=3, cache_seqlens=[5, 0], num_heads_q=4,
    ...                   num_heads_kv=2, head_dim=8, paged=True, page_size=2)
    >>> kw["q"].shape, kw["k_cache"].shape, kw["page_table"].shape
    ((2, 3, 4, 8), (5, 2, 2, 8), (2, 4))
    >>> sorted(kw)
    ['cache_seqlens', 'causal', 'k_cache', 'kv_layout', 'page_table', 'q', 'v_cache']

    Sequence 0 needs ceil(5 / 2) = 3 pages, sequence 1 none; 2 spare pages make 5.
    """
    if batch is None:
        lists = [x for x in (seqlens_q, seqlens_kv, cache_seqlens)
                 if x is not None and not np.isscalar(x)]
        batch = len(lists[0]) if lists else 1
    num_heads_kv = num_heads_q if num_heads_kv is None else num_heads_kv
    if num_heads_q % num_heads_kv:
        raise ValueError(f"num_heads_q={num_heads_q} is not a multiple of "
                         f"num_heads_kv={num_heads_kv}")
    if kv_layout not in ("NHD", "HND"):
        raise ValueError(f"kv_layout: expected 'NHD' or 'HND', got {kv_layout!r}")
    if page_table_fill == "spare" and spare_pages < 1:
        raise ValueError("page_table_fill='spare' needs spare_pages >= 1")
    np_dtype = DTYPES[dtype]
    rng = np.random.default_rng(seed)

    def random(shape):
        return rng.standard_normal(shape, dtype=np.float32).astype(np_dtype)

    def filler(shape):
        """What goes where a correct kernel never reads."""
        return np.full(shape, np.nan, np_dtype) if canaries else random(shape)

    q_lens = _per_sequence("seqlens_q", seqlens_q, batch)
    kv_lens = None if seqlens_kv is None else _per_sequence("seqlens_kv", seqlens_kv, batch)
    if not varlen and (len(set(q_lens)) > 1 or (kv_lens and len(set(kv_lens)) > 1)):
        raise ValueError(f"dense q needs equal lengths per sequence (use varlen=True); got "
                         f"seqlens_q={q_lens}, seqlens_kv={kv_lens}")

    kwargs = {}
    if varlen:
        kwargs["q"] = random((sum(q_lens), num_heads_q, head_dim))
        kwargs["cu_seqlens_q"] = _offsets(q_lens)
    else:
        kwargs["q"] = random((batch, q_lens[0] if batch else 0, num_heads_q, head_dim))

    if kv_lens is not None:
        if varlen:
            shape = (sum(kv_lens), num_heads_kv, head_dim)
            kwargs["cu_seqlens_kv"] = _offsets(kv_lens)
        else:
            shape = (batch, kv_lens[0] if batch else 0, num_heads_kv, head_dim)
        kwargs["k"], kwargs["v"] = random(shape), random(shape)

    if cache_seqlens is not None:
        cache_lens = _per_sequence("cache_seqlens", cache_seqlens, batch)
        if paged:
            k_cache, v_cache, page_table = _paged_cache(
                rng, random, filler, cache_lens, num_heads_kv, head_dim, page_size,
                kv_layout, spare_pages, shuffle_pages, page_table_padding, page_table_fill)
            kwargs["page_table"] = page_table
        else:
            k_cache, v_cache = _contiguous_cache(random, filler, cache_lens, num_heads_kv,
                                                 head_dim, kv_layout, cache_padding)
        kwargs["k_cache"], kwargs["v_cache"] = k_cache, v_cache
        kwargs["cache_seqlens"] = np.array(cache_lens, dtype=np.int32)
        kwargs["kv_layout"] = kv_layout

    kwargs["causal"] = bool(causal)
    if softmax_scale is not None:
        kwargs["softmax_scale"] = float(softmax_scale)
    return kwargs


def _contiguous_cache(random, filler, cache_lens, num_heads_kv, head_dim, kv_layout,
                      cache_padding):
    """``k_cache``, ``v_cache`` ``[B, S_cache, Hkv, D]`` (or HND), filler past each length."""
    capacity = max(cache_lens, default=0) + cache_padding
    caches = []
    for _ in range(2):
        cache = filler((len(cache_lens), capacity, num_heads_kv, head_dim))
        for b, length in enumerate(cache_lens):
            cache[b, :length] = random((length, num_heads_kv, head_dim))
        caches.append(cache if kv_layout == "NHD" else np.ascontiguousarray(cache.swapaxes(1, 2)))
    return caches


def _paged_cache(rng, random, filler, cache_lens, num_heads_kv, head_dim, page_size,
                 kv_layout, spare_pages, shuffle_pages, page_table_padding, page_table_fill):
    """Two page pools and the page table that maps every sequence's tokens into them."""
    pages_needed = [math.ceil(n / page_size) for n in cache_lens]
    num_pages = sum(pages_needed) + spare_pages
    order = rng.permutation(num_pages) if shuffle_pages else np.arange(num_pages)
    used, spare = order[:sum(pages_needed)], order[sum(pages_needed):]

    width = max(pages_needed, default=0) + page_table_padding
    if page_table_fill == "spare":
        page_table = rng.choice(spare, size=(len(cache_lens), width)).astype(np.int32)
    else:
        page_table = np.full((len(cache_lens), width), page_table_fill, dtype=np.int32)
    start = 0
    for b, n in enumerate(pages_needed):
        page_table[b, :n] = used[start:start + n]
        start += n

    pools = []
    for _ in range(2):
        pool = filler((num_pages, page_size, num_heads_kv, head_dim))   # NHD while filling
        for b, length in enumerate(cache_lens):
            t = np.arange(length)
            pool[page_table[b, t // page_size], t % page_size] = random(
                (length, num_heads_kv, head_dim))
        pools.append(pool if kv_layout == "NHD" else np.ascontiguousarray(pool.swapaxes(1, 2)))
    return pools[0], pools[1], page_table


def describe(kwargs) -> str:
    """One line naming a problem's configuration, for test ids and failure messages."""
    q = kwargs["q"]
    varlen = kwargs.get("cu_seqlens_q") is not None
    parts = [f"{dtype_name(q) if q.dtype != np.uint16 else kwargs.get('dtype')}",
             f"q{tuple(q.shape)}"]
    if varlen:
        parts.append(f"seqlens_q={np.diff(np.asarray(kwargs['cu_seqlens_q'])).tolist()}")
    if kwargs.get("k") is not None:
        parts.append(f"k{tuple(kwargs['k'].shape)}")
        if kwargs.get("cu_seqlens_kv") is not None:
            parts.append(f"seqlens_kv={np.diff(np.asarray(kwargs['cu_seqlens_kv'])).tolist()}")
    if kwargs.get("k_cache") is not None:
        kind = "paged" if kwargs.get("page_table") is not None else "cache"
        parts.append(f"{kind}{tuple(kwargs['k_cache'].shape)}:{kwargs.get('kv_layout', 'NHD')}")
        if kwargs.get("cache_seqlens") is not None:
            parts.append(f"cache_seqlens={np.asarray(kwargs['cache_seqlens']).tolist()}")
    if kwargs.get("causal"):
        parts.append("causal")
    if kwargs.get("softmax_scale") is not None:
        parts.append(f"scale={kwargs['softmax_scale']:.3g}")
    return " ".join(parts)


def take_sequence(kwargs, b: int) -> dict:
    """The kwargs (NumPy) of sequence ``b`` alone (batch 1), sharing the page pool if paged.

    The output of this problem must equal sequence ``b``'s rows of the batched output.
    """
    one = {key: value for key, value in kwargs.items()
           if key not in ("q", "k", "v", "k_cache", "v_cache", "cache_seqlens",
                          "page_table", "cu_seqlens_q", "cu_seqlens_kv")}
    for name, cu_name in (("q", "cu_seqlens_q"), ("k", "cu_seqlens_kv"), ("v", "cu_seqlens_kv")):
        x = kwargs.get(name)
        if x is None:
            continue
        cu = kwargs.get(cu_name)
        if cu is not None:
            lo, hi = int(cu[b]), int(cu[b + 1])
            one[name] = x[lo:hi]
            one[cu_name] = np.array([0, hi - lo], dtype=np.int32)
        else:
            one[name] = x[b:b + 1]
    if kwargs.get("k_cache") is not None:
        if kwargs.get("page_table") is not None:
            one["k_cache"], one["v_cache"] = kwargs["k_cache"], kwargs["v_cache"]
            one["page_table"] = kwargs["page_table"][b:b + 1]
        else:
            one["k_cache"] = kwargs["k_cache"][b:b + 1]
            one["v_cache"] = kwargs["v_cache"][b:b + 1]
        if kwargs.get("cache_seqlens") is not None:
            one["cache_seqlens"] = kwargs["cache_seqlens"][b:b + 1]
    return one


def sequence_rows(kwargs, b: int):
    """Index that selects sequence ``b``'s rows of ``out`` and of ``lse``: ``(out_ix, lse_ix)``."""
    cu = kwargs.get("cu_seqlens_q")
    if cu is None:
        return np.s_[b:b + 1], np.s_[b:b + 1]
    rows = np.s_[int(cu[b]):int(cu[b + 1])]
    return rows, np.s_[:, rows]


def to_device(kwargs, queue=None, float16_as_uint16: bool = False) -> dict:
    """Copy a problem's arrays to the SYCL device as dpnp arrays.

    bfloat16 arrays (which dpnp lacks) become ``uint16`` arrays of the same bits and the
    result gains ``dtype="bfloat16"``; likewise float16 if ``float16_as_uint16``.
    Other values are passed through.
    """
    import fmha  # noqa: F401  (configures the SYCL runtime before dpnp loads it)
    import dpnp

    out = {}
    for key, value in kwargs.items():
        if isinstance(value, np.ndarray):
            if value.dtype == np.dtype(ml_dtypes.bfloat16) or (
                    float16_as_uint16 and value.dtype == np.float16):
                out["dtype"] = value.dtype.name
                value = value.view(np.uint16)
            value = dpnp.asarray(value, sycl_queue=queue)
        out[key] = value
    return out


def to_numpy(x, dtype: Optional[str] = None) -> np.ndarray:
    """A result as a NumPy array; ``uint16`` bits are viewed as ``dtype`` if given."""
    if not isinstance(x, np.ndarray):
        import dpnp

        x = dpnp.asnumpy(x)
    if dtype is not None and x.dtype == np.uint16:
        x = x.view(DTYPES[dtype])
    return x


def as_float64(x, dtype: Optional[str] = None) -> np.ndarray:
    """``to_numpy(x, dtype)`` converted to float64 (for comparisons)."""
    return to_numpy(x, dtype).astype(np.float64)


def assert_close(got, expected, dtype: str, what: str = "out", context: str = "") -> None:
    """Assert ``got`` is within the :data:`TOLERANCES` of ``dtype`` of ``expected``.

    ``what`` is ``"out"`` or ``"lse"`` (which tolerance pair to use). Infinities must
    match exactly; NaN in ``got`` always fails. The message gives the worst element.
    """
    tol = TOLERANCES[dtype]
    atol, rtol = (tol.atol, tol.rtol) if what == "out" else (tol.lse_atol, tol.lse_rtol)
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    if got.size == 0:
        return
    finite = np.isfinite(expected)
    bad_inf = ~finite & (got != expected)
    with np.errstate(invalid="ignore"):      # inf - inf where expected is -inf
        err = np.where(finite, np.abs(got - expected), 0.0)
    err[np.isnan(got)] = np.inf
    excess = err - (atol + rtol * np.abs(np.where(finite, expected, 0.0)))
    if bad_inf.any() or (excess > 0).any():
        worst = np.unravel_index(np.argmax(np.where(bad_inf, np.inf, excess)), got.shape)
        raise AssertionError(
            f"{what} ({dtype}, atol={atol:g}, rtol={rtol:g}): "
            f"{int((excess > 0).sum() + bad_inf.sum())} of {got.size} elements off; worst at "
            f"{tuple(int(i) for i in worst)}: got {got[worst]!r}, expected "
            f"{expected[worst]!r}; max |err| on finite values "
            f"{np.max(np.where(np.isnan(err), np.inf, err)):.3g}. {context}")


def check_against_reference(kwargs, out, lse=None, dtype: Optional[str] = None):
    """Compare a result of ``fmha.attention(**kwargs)`` with the float64 reference.

    ``kwargs`` may be on the device (see :func:`to_device`); ``out`` and ``lse`` may be
    dpnp arrays. Returns the reference ``(out, lse)`` for further checks.
    """
    host = {key: (to_numpy(value, kwargs.get("dtype")) if hasattr(value, "shape") else value)
            for key, value in kwargs.items() if key not in ("out", "dtype")}
    dtype = dtype or dtype_name(host["q"])
    ref_out, ref_lse = attention_reference(**host, return_lse=True)
    context = f"problem: {describe(host)}"
    assert_close(as_float64(out, dtype), ref_out, dtype, "out", context)
    if lse is not None:
        assert_close(to_numpy(lse), ref_lse, dtype, "lse", context)
    return ref_out, ref_lse
