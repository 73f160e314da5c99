"""Plain float64 NumPy attention: the answer every kernel test is checked against.

Written for clarity, not speed, and sharing no code with the kernel or with
:mod:`fmha.validation`: each sequence's keys are gathered into a dense array, the mask
is built from the definition, and the softmax is taken in float64.

Semantics (the same as :func:`fmha.attention`):

* Sequence ``b`` attends over ``L_b = cache_len_b + Skv_b`` keys: its cache first
  (``cache_seqlens[b]`` tokens), then its new keys ``k``.
* Query head ``h`` uses KV head ``h // (Hq // Hkv)`` (GQA; MQA when ``Hkv == 1``).
* ``causal=True`` is aligned bottom-right: query ``i`` (0-based of ``Sq_b``) sees key
  ``j`` (0-based of ``L_b``) iff ``j <= i + L_b - Sq_b``.
* A query that sees no key outputs 0 and has log-sum-exp ``-inf``.
* Paged cache: token ``t`` of sequence ``b`` lives at
  ``pool[page_table[b, t // page_size], t % page_size]`` (NHD).

Only NumPy is needed; bfloat16 inputs are ``ml_dtypes.bfloat16`` arrays, which NumPy
converts to float64 like any other float.

>>> import numpy as np
>>> q = np.array([[[[1.0]]]])                 # [B=1, Sq=1, Hq=1, D=1]
>>> k = np.array([[[[0.0]], [[1.0]]]])        # [B=1, Skv=2, Hkv=1, D=1]
>>> v = np.array([[[[0.0]], [[1.0]]]])
>>> out, lse = attention_reference(q, k, v, softmax_scale=np.log(3.0), return_lse=True)
>>> np.round([out[0, 0, 0, 0], lse[0, 0, 0]], 6).tolist()   # softmax [1/4, 3/4], log 4
[0.75, 1.386294]
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["attention_reference", "gather_pages"]

KV_LAYOUTS = ("NHD", "HND")


def gather_pages(pool, page_table, cache_seqlens, kv_layout="NHD"):
    """Read each sequence's cached tokens out of a paged pool, in token order.

    Parameters
    ----------
    pool : numpy.ndarray
        The page pool: ``[num_pages, page_size, Hkv, D]`` for ``kv_layout="NHD"`` or
        ``[num_pages, Hkv, page_size, D]`` for ``"HND"``.
    page_table : numpy.ndarray
        Integer ``[B, max_pages_per_seq]``. Sequence ``b`` uses the first
        ``ceil(cache_seqlens[b] / page_size)`` entries; the rest are never read.
    cache_seqlens : numpy.ndarray
        Integer ``[B]``, the number of cached tokens of each sequence.
    kv_layout : {"NHD", "HND"}
        Layout of ``pool``.

    Returns
    -------
    list of numpy.ndarray
        ``B`` arrays; entry ``b`` is ``[cache_seqlens[b], Hkv, D]`` with ``pool``'s dtype.

    Raises
    ------
    ValueError
        If a used page-table entry is outside ``[0, num_pages)`` (NumPy would silently
        wrap negative indices) or a sequence needs more pages than the table has.

    Examples
    --------
    Two pages of size 2; sequence 0 holds 3 tokens in pages 1 then 0:

    >>> import numpy as np
    >>> pool = np.arange(4.0).reshape(2, 2, 1, 1)     # [num_pages, page_size, Hkv, D]
    >>> [g[:, 0, 0].tolist() for g in gather_pages(pool, np.array([[1, 0]]), np.array([3]))]
    [[2.0, 3.0, 0.0]]
    """
    if kv_layout not in KV_LAYOUTS:
        raise ValueError(f"kv_layout: expected one of {KV_LAYOUTS}, got {kv_layout!r}")
    pool = np.asarray(pool)
    page_table = np.asarray(page_table)
    # View an HND pool as NHD so a single indexing rule serves both layouts.
    pool_nhd = pool if kv_layout == "NHD" else pool.transpose(0, 2, 1, 3)
    num_pages, page_size = pool_nhd.shape[:2]

    sequences = []
    for b, length in enumerate(np.asarray(cache_seqlens).tolist()):
        pages_needed = math.ceil(length / page_size)
        used = page_table[b, :pages_needed]
        if len(used) < pages_needed:
            raise ValueError(f"page_table: sequence {b} needs {pages_needed} pages for "
                             f"{length} tokens, the table has {page_table.shape[1]}")
        if used.size and (used.min() < 0 or used.max() >= num_pages):
            raise ValueError(f"page_table: entries of sequence {b} must be in "
                             f"[0, {num_pages}), got {used.tolist()}")
        t = np.arange(length)
        sequences.append(pool_nhd[used[t // page_size], t % page_size])
    return sequences


def attention_reference(q, k=None, v=None, *, k_cache=None, v_cache=None,
                        cache_seqlens=None, page_table=None, kv_layout="NHD",
                        cu_seqlens_q=None, cu_seqlens_kv=None, causal=False,
                        softmax_scale=None, return_lse=False):
    """Attention over a KV cache and new keys, in float64.

    Parameters
    ----------
    q : numpy.ndarray
        ``[B, Sq, Hq, D]``, or packed ``[total_q, Hq, D]`` with ``cu_seqlens_q``.
    k, v : numpy.ndarray, optional
        New keys and values: ``[B, Skv, Hkv, D]``, or ``[total_kv, Hkv, D]`` with
        ``cu_seqlens_kv``. They follow the cache in each sequence.
    k_cache, v_cache : numpy.ndarray, optional
        Contiguous cache ``[B, S_cache, Hkv, D]`` (``"HND"``: ``[B, Hkv, S_cache, D]``),
        or with ``page_table`` a page pool ``[num_pages, page_size, Hkv, D]``
        (``"HND"``: ``[num_pages, Hkv, page_size, D]``).
    cache_seqlens : numpy.ndarray, optional
        Integer ``[B]``: cached tokens per sequence. Defaults to ``S_cache`` for a
        contiguous cache; required with ``page_table``.
    page_table : numpy.ndarray, optional
        Integer ``[B, max_pages_per_seq]``, see :func:`gather_pages`.
    kv_layout : {"NHD", "HND"}
        Layout of the cache only; ``k`` and ``v`` are always ``[..., Hkv, D]``.
    cu_seqlens_q, cu_seqlens_kv : numpy.ndarray, optional
        Integer ``[B + 1]`` offsets of each sequence in the packed ``q`` / ``k``, ``v``.
    causal : bool
        Bottom-right aligned causal mask (see the module docstring).
    softmax_scale : float, optional
        Multiplies ``q @ k.T``; default ``1 / sqrt(D)``.
    return_lse : bool
        Also return the natural-log log-sum-exp of the scaled scores.

    Returns
    -------
    out : numpy.ndarray
        float64, the shape of ``q``. Rows that see no key are 0.
    lse : numpy.ndarray
        Only with ``return_lse``: float64 ``[B, Hq, Sq]``, or ``[Hq, total_q]`` for
        packed ``q``. ``-inf`` for rows that see no key.
    """
    varlen = cu_seqlens_q is not None
    q = np.asarray(q, dtype=np.float64)
    head_dim = q.shape[-1]
    scale = 1.0 / math.sqrt(head_dim) if softmax_scale is None else float(softmax_scale)

    # Per-sequence queries [Sq_b, Hq, D].
    if varlen:
        cu_q = np.asarray(cu_seqlens_q).tolist()
        queries = [q[cu_q[b]:cu_q[b + 1]] for b in range(len(cu_q) - 1)]
    else:
        queries = list(q)
    batch = len(queries)

    keys = [[] for _ in range(batch)]    # per sequence: a list of [n, Hkv, D] parts
    values = [[] for _ in range(batch)]

    if k_cache is not None:
        if page_table is not None:
            k_parts = gather_pages(k_cache, page_table, cache_seqlens, kv_layout)
            v_parts = gather_pages(v_cache, page_table, cache_seqlens, kv_layout)
        else:
            # View an HND cache as NHD: [B, S_cache, Hkv, D].
            k_nhd = k_cache if kv_layout == "NHD" else np.swapaxes(k_cache, 1, 2)
            v_nhd = v_cache if kv_layout == "NHD" else np.swapaxes(v_cache, 1, 2)
            lengths = ([k_nhd.shape[1]] * batch if cache_seqlens is None
                       else np.asarray(cache_seqlens).tolist())
            k_parts = [k_nhd[b, :lengths[b]] for b in range(batch)]
            v_parts = [v_nhd[b, :lengths[b]] for b in range(batch)]
        for b in range(batch):
            keys[b].append(k_parts[b])
            values[b].append(v_parts[b])

    if k is not None:
        if varlen:
            cu_kv = np.asarray(cu_seqlens_kv).tolist()
            k_new = [k[cu_kv[b]:cu_kv[b + 1]] for b in range(batch)]
            v_new = [v[cu_kv[b]:cu_kv[b + 1]] for b in range(batch)]
        else:
            k_new, v_new = list(k), list(v)
        for b in range(batch):
            keys[b].append(k_new[b])
            values[b].append(v_new[b])

    if k is None and k_cache is None:
        raise ValueError("attention_reference needs new keys (k, v), a cache, or both")

    outs, lses = [], []
    for b in range(batch):
        k_b = np.concatenate([np.asarray(x, dtype=np.float64) for x in keys[b]])
        v_b = np.concatenate([np.asarray(x, dtype=np.float64) for x in values[b]])
        o, lse = _one_sequence(queries[b], k_b, v_b, scale, causal)
        outs.append(o)
        lses.append(lse)

    if varlen:
        out = np.concatenate(outs) if outs else np.zeros_like(q)
        lse = (np.concatenate(lses, axis=1) if lses
               else np.zeros((q.shape[1], 0), dtype=np.float64))
    else:
        out = np.stack(outs) if outs else np.zeros_like(q)
        lse = (np.stack(lses) if lses
               else np.zeros((0, q.shape[2], q.shape[1]), dtype=np.float64))
    return (out, lse) if return_lse else out


def _one_sequence(q, k, v, scale, causal):
    """Attention of one sequence.

    Parameters
    ----------
    q : numpy.ndarray
        float64 ``[Sq, Hq, D]``.
    k, v : numpy.ndarray
        float64 ``[L, Hkv, D]``: the cached keys, then the new ones.
    scale : float
    causal : bool

    Returns
    -------
    out : numpy.ndarray
        float64 ``[Sq, Hq, D]``.
    lse : numpy.ndarray
        float64 ``[Hq, Sq]``.
    """
    num_queries, num_heads_q, head_dim = q.shape
    num_keys, num_heads_kv = k.shape[0], k.shape[1]
    group = num_heads_q // num_heads_kv

    i = np.arange(num_queries)[:, None]      # query index within the sequence
    j = np.arange(num_keys)[None, :]         # key index: cache first, then new keys
    if causal:
        visible = j <= i + num_keys - num_queries
    else:
        visible = np.ones((num_queries, num_keys), dtype=bool)
    has_key = visible.any(axis=1)   # [Sq]

    out = np.zeros((num_queries, num_heads_q, head_dim))
    lse = np.full((num_heads_q, num_queries), -np.inf)
    for h in range(num_heads_q):
        kv_head = h // group
        scores = scale * (q[:, h, :] @ k[:, kv_head, :].T)   # [Sq, L]
        scores = np.where(visible, scores, -np.inf)
        # Subtracting the row maximum keeps exp() finite; rows without keys use 0.
        row_max = np.where(has_key, scores.max(axis=1, initial=-np.inf), 0.0)
        weights = np.exp(scores - row_max[:, None])            # masked entries -> 0
        total = weights.sum(axis=1)
        safe_total = np.where(has_key, total, 1.0)
        out[:, h, :] = (weights / safe_total[:, None]) @ v[:, kv_head, :]
        lse[h] = np.where(has_key, row_max + np.log(safe_total), -np.inf)
    return out, lse
