"""Where each sequence's queries, new keys and cache are: resolved on the host once,
read by each work-group once.

``seqlens`` is an int64 array ``[B, SEQ_FIELDS]``; row b holds:

=============  ================================================================
q_start        first row of sequence b in the packed q ``[total_q, Hq, D]``
q_len          Sq_b
new_start      first row of sequence b in the packed new k/v ``[total_kv, Hkv, D]``
new_len        Skv_b (new keys)
cache_len      cache_seqlens[b]
table_start    offset of page_table[b, 0] in the flattened page table
=============  ================================================================

Sequence b attends over ``kv_len = cache_len + new_len`` keys, its cache first.
"""
from __future__ import annotations

import numba_dpex as dpex
import numpy as np

SEQ_FIELDS = 6


def pack_seqlens(cu_seqlens_q, cu_seqlens_new, cache_seqlens, table_starts):
    """Host: the ``[B, SEQ_FIELDS]`` int64 table from cumulative offsets and lengths."""
    cu_q = np.asarray(cu_seqlens_q, dtype=np.int64)
    cu_new = np.asarray(cu_seqlens_new, dtype=np.int64)
    return np.stack([cu_q[:-1], np.diff(cu_q), cu_new[:-1], np.diff(cu_new),
                     np.asarray(cache_seqlens, dtype=np.int64),
                     np.asarray(table_starts, dtype=np.int64)], axis=1).astype(np.int64)


@dpex.device_func
def seqlen_info(seqlens, b):
    """``(q_start, q_len, new_start, new_len, cache_len, table_start)`` of sequence b."""
    row = b * SEQ_FIELDS
    return (seqlens[row], seqlens[row + 1], seqlens[row + 2], seqlens[row + 3],
            seqlens[row + 4], seqlens[row + 5])
