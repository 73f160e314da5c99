"""Online softmax (one pass over the KV tiles), in base 2.

Each lane owns one row and keeps its running max ``m`` and running sum ``l`` (of
``2 ** (s - m)``) in registers; the scores arrive already multiplied by
``softmax_scale * log2(e)`` (folded into Q when it is loaded), so ``exp2`` is exact
softmax. Rows that have seen no key yet have ``m = -inf``: the shift then uses 0, so
``2 ** (-inf - 0) = 0`` and no ``inf - inf`` NaN appears.
"""
from __future__ import annotations

import math

import numba
import numba_dpex as dpex
import numpy as np

from xetile import fastmath
from xetile.rowstats import exp2_row, row_max

LN2 = math.log(2.0)
NEG_INF = np.float32(-np.inf)


def make_softmax(block_n: int):
    tile_max, tile_exp2 = row_max(block_n), exp2_row(block_n)

    @dpex.device_func
    def update(scores, m, l):
        """Fold one tile of scores into (m, l): ``(p, m_new, l_new, alpha)``.

        ``alpha = 2 ** (m - m_new)`` rescales everything accumulated so far.
        """
        m_new = tile_max(scores, m)
        shift = m_new if m_new != NEG_INF else numba.float32(0.0)
        alpha = fastmath.exp2(m - shift)
        p, p_sum = tile_exp2(scores, shift)
        return p, m_new, l * alpha + p_sum, alpha

    return update, finalize


@dpex.device_func
def finalize(m, l):
    """``(1 / l, lse)``: the output scale and the natural-log log-sum-exp.

    A row that saw no key (l = 0) gets scale 0 (output 0) and lse -inf.
    """
    if l > numba.float32(0.0):
        return numba.float32(1.0) / l, m * numba.float32(LN2) + math.log(l)
    return numba.float32(0.0), NEG_INF
