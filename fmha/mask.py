"""Causal masking, aligned bottom-right.

Query i (of q_len) sees key j (of kv_len) iff ``j <= i + kv_len - q_len``: the last
query sees every key, and with a KV cache the queries are the *last* q_len positions of
the sequence. (torch's ``is_causal`` aligns top-left, which differs when q_len != kv_len.)
Without causal masking every key ``j < kv_len`` is seen.
"""
from __future__ import annotations

import numba_dpex as dpex


@dpex.device_func
def key_limit(causal, query, q_len, kv_len):
    """The last key position query ``query`` may see (``kv_len - 1`` if not causal).

    Negative when the query sees no key (q_len > kv_len, early queries).
    """
    if causal:
        return query + kv_len - q_len
    return kv_len - 1


@dpex.device_func
def visible_ranges(causal, first_query, last_query, q_len, kv_len):
    """Key positions of a block of queries ``first_query..last_query``:

    ``(visible_end, unmasked_end)``: keys at or past ``visible_end`` are masked for
    every query of the block (their tiles are skipped); keys before ``unmasked_end``
    are seen by every query (their tiles need no mask).
    """
    visible_end = min(kv_len, key_limit(causal, last_query, q_len, kv_len) + 1)
    unmasked_end = min(kv_len, key_limit(causal, first_query, q_len, kv_len) + 1)
    return max(visible_end, 0), max(unmasked_end, 0)
