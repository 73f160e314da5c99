"""``fmha.attention``: the public entry point (host side: validate, lay out, launch)."""
from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import numpy as np

import xetile
from xetile import workspace
from xetile.kernel import check_sub_group_size
from xetile.launcher import Flat
from xetile.dtypes import reinterpret, storage

from fmha.config import FmhaConfig
from fmha.decode import (SPLIT_KEYS, DecodeConfig, decode_combine_kernel, decode_kernel,
                         decode_local_tiles)
from fmha.kernel import SOURCE_FIELDS, WORK_FIELDS, attention_kernel, scratch_tiles
from fmha.seqlen_info import pack_seqlens

LOG2E = 1.0 / math.log(2.0)
# page size of the new keys' single "page": larger than any sequence
ONE_PAGE_ROWS = 1 << 62


def attention(q, k=None, v=None, *, k_cache=None, v_cache=None, cache_seqlens=None,
              page_table=None, kv_layout="NHD", cu_seqlens_q=None, cu_seqlens_kv=None,
              causal=False, softmax_scale=None, return_lse=False, out=None, dtype=None):
    """Multi-head attention forward over a KV cache (contiguous or paged) and new keys.

    Each sequence ``b`` attends over ``L_b = cache_len_b + Skv_b`` keys: the first
    ``cache_len_b`` rows of its cache, then its ``Skv_b`` new keys. One kernel does both
    phases in one online-softmax pass (flash attention); no ``[Sq, L]`` score matrix is
    ever stored.

    Parameters
    ----------
    q : array, ``[B, Sq, Hq, D]``, or ``[total_q, Hq, D]`` with ``cu_seqlens_q``
        Queries. float32, float16 or bfloat16 (``ml_dtypes.bfloat16`` numpy arrays, or
        ``uint16`` arrays of bf16/fp16 bits with ``dtype=``).
    k, v : array, ``[B, Skv, Hkv, D]``, or ``[total_kv, Hkv, D]`` with ``cu_seqlens_kv``
        The newly projected keys and values (optional; both or neither).
    k_cache, v_cache : array, optional
        The cache. Contiguous: ``[B, S_cache, Hkv, D]`` (``"NHD"``) or
        ``[B, Hkv, S_cache, D]`` (``"HND"``). Paged (with ``page_table``): a pool
        ``[num_pages, page_size, Hkv, D]`` (``"NHD"``) or ``[num_pages, Hkv, page_size,
        D]`` (``"HND"``); any ``page_size >= 1``.
    cache_seqlens : int array ``[B]``, optional
        Valid cache rows per sequence (default: all ``S_cache``; required when paged).
    page_table : int32 array ``[B, max_pages_per_seq]``, optional
        Token ``t`` of sequence ``b``'s cache is
        ``pool[page_table[b, t // page_size], t % page_size]`` (NHD). Pages may be in
        any order; entries past ``ceil(cache_seqlens[b] / page_size)`` are not read.
    kv_layout : {"NHD", "HND"}
        Layout of the cache only; ``k``/``v`` are always ``[..., Hkv, D]``.
    cu_seqlens_q, cu_seqlens_kv : int32 array ``[B + 1]``, optional
        ``0`` then cumulative lengths of the packed (varlen) q and k/v. Sequences may be
        empty.
    causal : bool
        Bottom-right aligned: query ``i`` of ``Sq_b`` sees key ``j`` of ``L_b`` iff
        ``j <= i + L_b - Sq_b``. A query that sees no key outputs 0 (lse ``-inf``).
    softmax_scale : float, optional
        Default ``1 / sqrt(D)``.
    return_lse : bool
        Also return the log-sum-exp of the scaled scores (natural log, float32),
        ``[B, Hq, Sq]``, or ``[Hq, total_q]`` when varlen.
    out : array like ``q``, optional
        Written in place and returned.
    dtype : {"bfloat16", "float16"}, optional
        Required when the arrays are ``uint16`` bits (dpnp has no bfloat16).

    Returns
    -------
    out : array shaped and typed like ``q`` (numpy in, numpy out; dpnp in, dpnp out)
    lse : float32 array, only with ``return_lse``

    Notes
    -----
    GQA/MQA: query head ``h`` uses KV head ``h // (Hq // Hkv)``. Accumulation and
    softmax are float32. Caches are only read. Results are bitwise deterministic.

    Examples
    --------
    A paged cache of 3-token pages, holding 5 tokens for sequence 0 and 2 for sequence 1:

    >>> import numpy as np, fmha
    >>> rng = np.random.default_rng(0)
    >>> B, Hq, Hkv, D, page = 2, 4, 2, 64, 3
    >>> pool_k = rng.standard_normal((6, page, Hkv, D), dtype=np.float32)
    >>> pool_v = rng.standard_normal((6, page, Hkv, D), dtype=np.float32)
    >>> page_table = np.array([[4, 1], [0, 5]], dtype=np.int32)   # 2 pages each
    >>> cache_seqlens = np.array([5, 2], dtype=np.int32)            # 5 <= 2 * 3
    >>> q = rng.standard_normal((B, 1, Hq, D), dtype=np.float32)   # one new query each
    >>> o = fmha.attention(q, k_cache=pool_k, v_cache=pool_v, page_table=page_table,
    ...                    cache_seqlens=cache_seqlens, causal=True)
    >>> o.shape
    (2, 1, 4, 64)
    """
    from fmha.validation import check_arguments

    problem = check_arguments(q, k, v, k_cache, v_cache, cache_seqlens, page_table,
                              kv_layout, cu_seqlens_q, cu_seqlens_kv, causal,
                              softmax_scale, return_lse, out, dtype)
    return _attention(problem, q, k, v, k_cache, v_cache, page_table, return_lse, out)


class _Plan(NamedTuple):
    """Which kernel runs a problem, and how it is launched."""
    kernel: object          # the compiled kernel
    lanes: int              # work-items per work-group (one sub-group)
    rows_per_group: int     # rows (query, head) each work-group owns
    scratch: Callable       # n_groups, queue -> the scratch arguments
    reports_sub_group: bool  # takes a status word: uses sub-group collectives
    split_keys: int = 0     # decode: keys per work-group (longer sequences are split)
    combine: object = None  # decode: the kernel merging the splits


def _plans(problem):
    """``[(plan, sequences)]``: the decode kernel (lanes split D) for the sequences with
    at most ``DecodeConfig.max_rows`` rows per KV head, the prefill kernel (lane = row)
    for the others. The choice is per sequence, and the key tile depends on D alone, so
    a sequence gets the same bits alone or in any batch."""
    rows = np.asarray(problem.seqlens_q, dtype=np.int64) * problem.group_size
    decode = DecodeConfig.default(problem.head_dim, problem.dtype)
    short = rows <= decode.max_rows
    plans = []
    if short.any():
        plans.append((_Plan(decode_kernel(decode), decode.lanes, decode.max_rows,
                            functools.partial(_decode_scratch, decode), True,
                            SPLIT_KEYS, functools.partial(decode_combine_kernel, decode)),
                      np.flatnonzero(short)))
    if not short.all():
        config = FmhaConfig.default(problem.head_dim, problem.dtype, int(rows.max()))
        plans.append((_Plan(attention_kernel(config), config.block_m,
                            config.rows_per_group, functools.partial(scratch_tiles, config),
                            False), np.flatnonzero(~short)))
    return plans


def _decode_scratch(config, n_groups, queue):
    """The decode kernel's partial results (used when a sequence is split) and tiles."""
    W, R = config.tile_width, config.max_rows
    return (workspace.flat_scratch("fmha.partial_acc", n_groups * R * W, np.float32, queue),
            workspace.flat_scratch("fmha.partial_ml", n_groups * R * 2, np.float32, queue),
            *decode_local_tiles(config))


def _attention(problem, q, k, v, k_cache, v_cache, page_table, return_lse, out):
    xp = _ArrayKind(problem.kind, q)
    B, Hq, Hkv, D = problem.batch, problem.num_heads_q, problem.num_heads_kv, problem.head_dim
    total_q = int(np.sum(problem.seqlens_q))
    dev_dtype = storage(problem.dtype).device_dtype

    q_flat = xp.flat(q, dev_dtype)
    absent = xp.scratch("fmha.absent", 1, dev_dtype)  # never read: there are no new keys
    k_flat, v_flat = ((xp.flat(k, dev_dtype), xp.flat(v, dev_dtype)) if k is not None
                      else (absent, absent))

    if k_cache is not None:
        kc_flat, vc_flat = xp.flat(k_cache, dev_dtype), xp.flat(v_cache, dev_dtype)
        if problem.paged:
            table = problem.page_table  # validated, on the host
            page_size = problem.page_size
        else:  # a contiguous cache is a pool with one page per sequence
            table = np.arange(B, dtype=np.int64)[:, None]
            page_size = int(k_cache.shape[2] if problem.kv_layout == "HND" else k_cache.shape[1])
        cache_geometry = _cache_geometry(problem.kv_layout, page_size, Hkv, D)
    else:
        kc_flat = vc_flat = absent
        table = np.zeros((B, 1), dtype=np.int64)
        cache_geometry = (1, 0, 0, 0)
    new_geometry = (ONE_PAGE_ROWS, 0, Hkv * D, D)
    sources = np.array(cache_geometry + new_geometry, dtype=np.int64)
    assert sources.size == 2 * SOURCE_FIELDS

    cu_q = np.concatenate([[0], np.cumsum(problem.seqlens_q)])
    cu_new = np.concatenate([[0], np.cumsum(problem.seqlens_kv_new)])
    table_starts = np.arange(B, dtype=np.int64) * table.shape[1]
    seqlens = pack_seqlens(cu_q, cu_new, problem.cache_seqlens, table_starts)
    plans = []
    for plan, sequences in _plans(problem):
        work = _work_list(problem, plan.rows_per_group, sequences, plan.split_keys)
        plans.append((plan, work, _combine_list(problem, work, plan.split_keys)))
    # every integer table of the call travels in one copy (each copy costs 74-100 us)
    tables = xp.upload([table, np.zeros(1, np.int64), seqlens, sources]
                       + [t for _, work, combine in plans for t in (work, combine)])
    table_dev, one_page, seqlens_dev, sources_dev = tables[:4]
    out_dev = xp.empty(q.shape, dev_dtype)  # q's shape: the result needs no reshape
    out_flat = Flat(out_dev)
    lse_flat = xp.empty(max(Hq * total_q, 1), np.float32)
    inputs = (q_flat, k_flat, v_flat, kc_flat, vc_flat, table_dev, one_page, seqlens_dev)
    for i, (plan, work, combine) in enumerate(plans):
        work_dev, combine_dev = tables[4 + 2 * i], tables[5 + 2 * i]
        if not len(work):
            continue
        status = (xp.scratch("fmha.status", 1, np.int32),) if plan.reports_sub_group else ()
        scratch = plan.scratch(len(work), xp.queue)
        xetile.launch(
            plan.kernel, (len(work) * plan.lanes,), (plan.lanes,), *inputs, work_dev,
            sources_dev, out_flat, lse_flat, *status, *scratch,
            Hq, Hkv, int(bool(problem.causal)), np.float32(problem.softmax_scale * LOG2E))
        if status:
            check_sub_group_size(status[0].array, plan.lanes, "fmha_decode", plan.kernel)
        if len(combine):
            xetile.launch(plan.combine(), (len(combine) * plan.lanes,), (plan.lanes,),
                          seqlens_dev, combine_dev, *scratch[:2],  # the partials
                          out_flat, lse_flat, Hq, Hkv)

    result = xp.result(out_dev, q, problem.dtype, out)
    if not return_lse:
        return result
    lse = lse_flat[: Hq * total_q].reshape(Hq, total_q)
    if not problem.varlen:  # [Hq, B * Sq] -> [B, Hq, Sq]
        lse = lse.reshape(Hq, B, total_q // B if B else 0).transpose(1, 0, 2)
    return result, xp.lse(lse)


def _cache_geometry(kv_layout, page_size, num_heads_kv, head_dim):
    """(page_size, page_stride, row_stride, head_stride) of a pool, in elements."""
    page_stride = page_size * num_heads_kv * head_dim
    if kv_layout == "NHD":   # [pages, page_size, Hkv, D]
        return page_size, page_stride, num_heads_kv * head_dim, head_dim
    return page_size, page_stride, head_dim, page_size * head_dim  # [pages, Hkv, ps, D]


def _work_list(problem, block_rows, sequences, split_keys=0):
    """int64 ``[n_groups, WORK_FIELDS]``: (sequence, KV head, first row) per work-group
    of ``block_rows`` rows, for the given sequences; with ``split_keys`` (decode, one
    work-group holds all rows) the third field is the split: keys
    ``[split * split_keys, (split + 1) * split_keys)`` of the sequence.

    Work-groups of one (sequence, KV head) are consecutive, so the K/V tiles they all
    read stay in the shared cache; within them the rows go last to first, so the causal
    tiles with the most keys start first and both cores finish together. The order does
    not change any result.
    """
    G = problem.num_heads_q // problem.num_heads_kv
    # the third field of sequence b's work-groups (the same for each of its KV heads)
    if split_keys:
        third_fields = [list(range(max(1, -(-int(problem.seqlens_kv[b]) // split_keys))))
                        for b in range(problem.batch)]
    else:
        third_fields = [list(reversed(range(0, int(problem.seqlens_q[b]) * G, block_rows)))
                        for b in range(problem.batch)]
    items = [(b, hk, third)
             for b in sequences
             for hk in range(problem.num_heads_kv)
             for third in third_fields[b]]
    return np.asarray(items, dtype=np.int64).reshape(-1, WORK_FIELDS)


def _combine_list(problem, work, split_keys):
    """int64 ``[n, WORK_FIELDS]``: (sequence, KV head, index of its split 0 in ``work``)
    for the (sequence, KV head) pairs that ``work`` split in more than one."""
    if not split_keys or not len(work):
        return np.zeros((0, WORK_FIELDS), np.int64)
    long = np.asarray(problem.seqlens_kv)[work[:, 0]] > split_keys
    first = long & (work[:, 2] == 0)
    index = np.flatnonzero(first)
    return np.stack([work[index, 0], work[index, 1], index], axis=1).astype(np.int64)


class _ArrayKind:
    """numpy in -> numpy out; dpnp/usm in -> the same kind out, on the same queue."""

    def __init__(self, kind, like):
        import dpnp

        self.kind = kind
        self.dpnp = dpnp
        # numpy inputs go to dpnp's default queue; device inputs stay on their own queue
        self.queue = like.sycl_queue if kind != "numpy" else None

    def upload(self, host_arrays):
        """Device copies (flat views of one int64 buffer, copied at once) of the arrays."""
        flat = [np.asarray(a, dtype=np.int64).reshape(-1) for a in host_arrays]
        ends = np.cumsum([a.size for a in flat])
        buffer = workspace.upload("fmha.tables", np.concatenate(flat), self.queue).array
        return [Flat(buffer, offset=int(end) - a.size, size=a.size)
                for a, end in zip(flat, ends)]

    def scratch(self, name, count, dtype):
        return workspace.flat_scratch(name, count, dtype, self.queue)

    def empty(self, shape, dtype):
        return self.dpnp.empty(shape, dtype=dtype, sycl_queue=self.queue)

    def flat(self, a, dev_dtype):
        """``a``'s elements as a flat kernel argument of ``dev_dtype`` (float16 and
        bfloat16 bits travel as uint16); a host array is copied to the device first (a
        device array is C-contiguous: validation refuses others)."""
        if isinstance(a, np.ndarray):
            a = np.ascontiguousarray(a)
            if a.dtype != dev_dtype:
                a = a.view(dev_dtype)  # numpy knows bfloat16 only through ml_dtypes
            a = self.dpnp.asarray(a, sycl_queue=self.queue)
        return Flat(a, dev_dtype)

    def result(self, out_dev, q, dtype_name, out):
        """The output (``out_dev``, q's shape, in the device dtype) as the caller's kind."""
        if self.kind == "numpy":
            host = self.dpnp.asnumpy(out_dev)
            if dtype_name != "float32":
                host = host.view(q.dtype)
            if out is None:
                return host
            out[...] = host
            return out
        res = out_dev
        if q.dtype != res.dtype:
            res = reinterpret(res, q.dtype)
        if out is None:
            return res
        out[...] = res
        return out

    def lse(self, lse):
        if self.kind == "numpy":
            return np.ascontiguousarray(self.dpnp.asnumpy(lse))
        return self.dpnp.ascontiguousarray(lse)
