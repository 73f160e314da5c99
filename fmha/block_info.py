"""Which KV tiles a work-group visits, for one row source (the cache, or the new keys).

The source's rows ``0 .. n_keys-1`` sit at key positions ``first_pos ..`` of the
sequence. Tiles are ``block_n`` rows each, counted from row 0 of the source. The KV loop
runs tiles ``[0, n_unmasked)`` without a mask, then ``[n_unmasked, n_blocks)`` with one;
tiles from ``n_blocks`` on are entirely masked and never read.
"""
from __future__ import annotations

import numba_dpex as dpex


def make_block_range(block_n: int):
    @dpex.device_func
    def block_range(n_keys, first_pos, visible_end, unmasked_end):
        """``(n_unmasked, n_blocks)`` for a source of ``n_keys`` rows at ``first_pos``."""
        visible = min(n_keys, max(visible_end - first_pos, 0))
        n_blocks = (visible + block_n - 1) // block_n
        # a tile needs no mask when all its rows exist and every query sees all of them
        unmasked = min(n_keys, max(unmasked_end - first_pos, 0))
        n_unmasked = min(unmasked // block_n, n_blocks)
        return n_unmasked, n_blocks
    return block_range
