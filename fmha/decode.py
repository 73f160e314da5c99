"""The decode kernel: few rows per KV head, so the lanes split the head dim instead.

In decode (one new query per sequence, or a few) a KV head has only ``Sq * G`` rows,
often 4. The prefill kernel (:mod:`fmha.kernel`) gives each lane a row, so most lanes
would idle while every key still costs ``2 * D`` vector instructions. Here:

* a work-group is one sub-group of ``lanes`` work-items and owns **every** row of one
  (sequence, KV head), at most ``max_rows`` of them;
* for each tile of ``lanes`` keys, read where they lie (through the page table:
  :func:`xetile.page_table.row_starts`, each lane reading its slice of D, converted to
  float32 as it is loaded), and each row in turn:
  ``S = q Kᵀ`` with the lanes splitting D (:func:`xetile.mma.vec_mat_t`: partial
  products, then a butterfly transpose-reduce that leaves key ``j``'s score in lane
  ``j``); online softmax over the lanes (two sub-group reductions per row and tile);
  ``O = alpha O + P V`` with the lanes splitting D (:func:`xetile.mma.vec_mat`).

A key then costs about ``2 * D / lanes`` vector instructions per row instead of
``2 * D`` per 16 rows: 2.5x fewer for 4 rows. Decode reads every K/V element once from
memory and then once per row from L1. float32 tiles are read where they lie (a copy
into local memory cost more than it saved); 16-bit tiles are converted to float32 once,
into local memory, and the rows read that (``DecodeConfig.stage``). On x86 CPU devices it asks for the next
tile's K/V lines while it computes the current one (:mod:`xetile.prefetch`): 5-15%
faster on the machines measured, though streaming and compute still mostly add up. ``lanes`` is ``DECODE_LANES`` (16).
A sequence longer than ``SPLIT_KEYS`` is
split across work-groups, whose partial results :func:`decode_combine_kernel` merges.
Masking, block ranges, the two phases (cache, then new keys) and the output are the
same as in prefill, from the same modules.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numba_dpex as dpex
import numpy as np
from numba import uint64 as u64
from numba_dpex import kernel_api as kapi

import xetile
from xetile import fastmath, mma, page_table, prefetch, subgroup, tile
from xetile.dtypes import STORAGE

from fmha.block_info import make_block_range
from fmha.config import LOCAL_MEMORY_BUDGET, MAX_HEAD_DIM
from fmha.kernel import SOURCE_FIELDS, WORK_FIELDS
from fmha.mask import key_limit, visible_ranges
from fmha.seqlen_info import seqlen_info
from fmha.softmax import NEG_INF
from fmha.softmax import finalize as softmax_finalize

# Lanes = keys per tile (the transpose-reduce maps key j to lane j). Measured (B8 Hq32
# Hkv8, 4096 keys, D128, 8 against 16 lanes alternated in fresh processes;
# docs/design.md section 3b):
# * Intel Xeon (Emerald Rapids, 512-bit FMA units), session 5, best of 20, six
#   rounds: HND pool, fp32 16 lanes 18.5-21.0 ms vs 8 lanes 23.3-33.4; fp16 14.0-22.8 vs
#   15.8-26.4 (the last three rounds 14.0-14.5 vs 15.8-26.2);
# * AMD EPYC (Zen 4, 256-bit FMA units), session 4: HND, fp16 8 lanes 9.5-10.4
#   ms vs 16 lanes 12.1-13.4 (fp32 15.5-19.3 vs 14.3-16.2, noisy); NHD (key rows 4 KiB
#   apart), 16 lanes 21.1-23.4 vs 8 lanes 23.2-24.0 (fp16 15.0-16.9 vs 17.6-18.2).
# * Intel Xeon with AMX (2 cores, session 7), HND page 64, best of 60, two rounds: fp32
#   16 lanes 13.9 ms vs 8 lanes 16.8-17.9; fp16 10.4-11.3 vs 13.2-13.6.
# 16 lanes win everywhere but for fp16 HND pools on the AMD machine, where 8 did (and
# the previous sessions chose the lanes from the key-row pitch for that).
DECODE_LANES = 16
DECODE_MAX_ROWS = 8    # rows (queries x heads per KV head) one work-group holds
# A work-group walks at most this many keys: a longer sequence is split across several
# (each writes a partial (m, l, acc)) and decode_combine_kernel merges them in a fixed
# order. The split depends on the sequence's own length only, so a sequence gets the
# same bits alone or in any batch; a multiple of every lane count.
SPLIT_KEYS = 4096
# While a tile is computed, ask for the lines of the tile this many tiles ahead (x86 CPU
# devices). Without it the tile's first reads wait on memory and the rest of the tile is
# L1 work, so compute and streaming take turns. Measured (B8 Hq32 Hkv8, 4096 keys, page
# 64, D128, best of 40-60, alternated fresh processes; docs/design.md section 3b):
# * Intel Xeon with AMX (2 cores, session 7), each lane asking for its own line
#   (xetile.prefetch.prefetch_rows): HND fp32 13.5-14.0 ms against 14.9-15.2 with one
#   address for all lanes, which beat no prefetch (14.7-15.7 against 15.7-16.6); NHD
#   18.1-18.2 against 20.0-20.8 without; fp16 9.7-10.2 against 10.1-10.6. One tile
#   ahead, two or four: within noise;
# * AMD EPYC (Zen 5, session 6), one address for all lanes: HND 8.8-13.8 ms against
#   10.3-13.9 without (faster in 8 of 10 rounds on a noisy host), fp16 7.3-8.4 vs
#   8.2-8.5; NHD (rows 4 KiB apart) gained nothing then (13.4-14.6 vs 13.6-13.9).
PREFETCH_TILES_AHEAD = 1


@dataclass(frozen=True)
class DecodeConfig:
    """Compile-time sizes of the decode kernel (one kernel per configuration)."""
    head_dim: int
    dtype: str = "float32"
    lanes: int = DECODE_LANES
    max_rows: int = DECODE_MAX_ROWS
    prefetch: bool = False  # compile in xetile.prefetch (x86 CPU devices only)
    # Convert each K/V tile to float32 once, into local memory, for every row to read
    # (16-bit storage). Read in place, a tile is converted once per row: a conversion
    # for each FMA, which made fp16 decode compute-bound. Measured (B8 Hq32 Hkv8, 4096
    # keys, page 64, best of 60, two rounds alternated in fresh processes, session 8):
    # fp16 HND 7.08 ms staged against 8.52-8.61 in place, bf16 7.23-7.34 against
    # 8.81-8.83, fp16 NHD 9.08-9.09 against 10.45-10.51; fp32 (nothing to convert)
    # 12.6 against 11.7, so float32 reads in place.
    stage: bool = False

    @classmethod
    def default(cls, head_dim: int, dtype: str = "float32") -> "DecodeConfig":
        """``DECODE_MAX_ROWS`` rows, fewer where the tiles would not fit local memory;
        16-bit tiles staged where that fits with as many rows; prefetching wherever the
        device supports it."""
        stages = (True, False) if dtype != "float32" else (False,)
        for rows in (DECODE_MAX_ROWS, DECODE_MAX_ROWS // 2):
            for stage in stages:
                config = cls(head_dim, dtype, DECODE_LANES, rows, prefetch.supported(),
                             stage)
                if config.local_memory_bytes <= LOCAL_MEMORY_BUDGET:
                    return config
        return config

    @property
    def chunks(self) -> int:
        return -(-self.head_dim // self.lanes)

    @property
    def tile_width(self) -> int:
        return self.chunks * self.lanes

    @property
    def local_memory_bytes(self) -> int:
        """q rows + accumulators + probabilities and statistics (+ a K and a V tile when
        staged)."""
        W, R, N = self.tile_width, self.max_rows, self.lanes
        return 4 * (2 * R * W + R * N + 3 * R * N + (2 * N * W if self.stage else 0))

    def can_implement(self) -> None:
        if not 1 <= self.head_dim <= MAX_HEAD_DIM:
            raise ValueError(f"head_dim: expected 1..{MAX_HEAD_DIM}, got {self.head_dim}")
        if self.dtype not in STORAGE:
            raise ValueError(f"dtype: expected one of {sorted(STORAGE)}, got {self.dtype!r}")
        if self.local_memory_bytes > LOCAL_MEMORY_BUDGET:
            raise ValueError(f"local memory: {self.local_memory_bytes} bytes needed, "
                             f"budget {LOCAL_MEMORY_BUDGET}")


@dpex.device_func
def row_token_head(r, q_start, kv_head, heads_per_kv):
    """Row ``r`` of a (sequence, KV head): query ``r // G`` of the sequence, query head
    ``kv_head * G + r % G``. Returns ``(token, head)``: the query's index in the packed
    q / out and its head (out row ``token * Hq + head``, lse ``[head, token]``)."""
    return q_start + r // heads_per_kv, kv_head * heads_per_kv + r % heads_per_kv


@xetile.factory
def decode_kernel(config: DecodeConfig):
    """The compiled decode kernel for ``config`` (once per process)."""
    config.can_implement()
    N, D, W, R = config.lanes, config.head_dim, config.tile_width, config.max_rows
    ops = tile.tile_ops(config.dtype, W, D, N)
    load = ops.stage_row
    key_rows = page_table.row_starts(N)
    STAGE = config.stage  # compile-time constants, as PREFETCH below
    gather = page_table.gather_rows(ops, N)
    tile_rows = tuple(j * W for j in range(N))  # row j of a staged tile
    tile_dtype = "float32" if STAGE else config.dtype  # what the products read
    scores_of = mma.vec_mat_t(N, config.chunks, N, tile_dtype, D)
    accumulate = mma.vec_mat(N, config.chunks, N, tile_dtype, D)
    block_range = make_block_range(N)
    store = STORAGE[config.dtype].store
    PREFETCH = config.prefetch  # a compile-time constant: the call is gone when False
    line = prefetch.CACHE_LINE_BYTES // STORAGE[config.dtype].device_dtype.itemsize
    prefetch_tile = prefetch.prefetch_rows(N, N, D, line)
    ahead = PREFETCH_TILES_AHEAD * N

    @dpex.device_func
    def attend_source(q_rows, acc, probs, stats, k_tile, v_tile, k_src, v_src, table,
                      table_start, page_size, page_stride, row_stride, base, row_begin,
                      n_keys, first_pos, visible_end, unmasked_end, rows, heads_per_kv,
                      causal, q_len, kv_len, lane):
        """Fold rows ``row_begin .. n_keys-1`` of one row source (at key positions
        ``first_pos + row``) into every row's (acc, m, l) (stats: m, l, alpha)."""
        n_unmasked, n_blocks = block_range(n_keys - row_begin, first_pos + row_begin,
                                           visible_end, unmasked_end)
        for block in range(n_blocks):
            first = row_begin + block * N
            if STAGE:  # each lane stages, and later reads, only its own columns
                gather(k_tile, k_src, table, table_start, page_size, base, page_stride,
                       row_stride, first, n_keys, lane)
                gather(v_tile, v_src, table, table_start, page_size, base, page_stride,
                       row_stride, first, n_keys, lane)
            else:
                keys = key_rows(table, table_start, page_size, base, page_stride,
                                row_stride, first, n_keys)
            key = first_pos + first + lane
            if PREFETCH and first + ahead < n_keys:  # see PREFETCH_TILES_AHEAD
                prefetch_tile(k_src, v_src,
                              key_rows(table, table_start, page_size, base, page_stride,
                                       row_stride, first + ahead, n_keys), lane)
            for r in range(rows):
                if STAGE:
                    s = scores_of(q_rows, r * W, k_tile, tile_rows, lane)
                else:
                    s = scores_of(q_rows, r * W, k_src, keys, lane)
                if block >= n_unmasked:
                    limit = key_limit(causal, r // heads_per_kv, q_len, kv_len)
                    seen = key < first_pos + n_keys and key <= limit
                    s = s if seen else NEG_INF
                at = u64(3 * r * N) + u64(lane)
                m_old = stats[at]
                m_new = max(m_old, subgroup.reduce_max(s))
                shift = m_new if m_new != NEG_INF else numba.float32(0.0)
                alpha = fastmath.exp2(m_old - shift)
                p = fastmath.exp2(s - shift)
                stats[at + u64(N)] = stats[at + u64(N)] * alpha + subgroup.reduce_add(p)
                stats[at] = m_new
                stats[at + u64(2 * N)] = alpha
                probs[u64(r * N) + u64(lane)] = p
            subgroup.barrier()  # probs are written lane by lane and read by every lane
            for r in range(rows):
                alpha = stats[u64((3 * r + 2) * N) + u64(lane)]
                if STAGE:
                    accumulate(probs, r * N, v_tile, tile_rows, acc, r * W, alpha, lane)
                else:
                    accumulate(probs, r * N, v_src, keys, acc, r * W, alpha, lane)
            subgroup.barrier()  # before the next tile's probs overwrite these
        return 0

    @xetile.kernel(sub_group_size=N)
    def fmha_decode(
        item: kapi.NdItem,
        q, k_new, v_new, k_cache, v_cache, page_table_, one_page, seqlens, work, sources,
        out, lse,     # as fmha.kernel.fmha_forward
        status,       # OUT int32 [1]: the sub-group size the kernel ran with
        partial_acc,  # OUT float32 [work items, R, W]: unnormalised acc of a split
        partial_ml,   # OUT float32 [work items, R, 2]: its (m, l)
        q_rows,       # SCRATCH local float32 [R, W]
        acc,          # SCRATCH local float32 [R, W]
        probs,        # SCRATCH local float32 [R, N]
        stats,        # SCRATCH local float32 [R, 3, N]: running max, running sum, alpha
                      # (each lane keeps its own copy: a math call on a value loaded
                      # from one address for all lanes stops the runtime vectorising
                      # the kernel, and it then silently runs with sub-groups of 1)
        k_tile,       # SCRATCH local float32 [N, W] if config.stage, else [1]
        v_tile,       # SCRATCH local float32 [N, W] if config.stage, else [1]
        num_heads_q, num_heads_kv, causal, scale_log2,
    ):
        lane = item.get_local_id(0)
        group = item.get_group().get_group_id(0)
        if group == 0:
            status[0] = subgroup.sub_group_size()
        b, kv_head, split = (work[group * WORK_FIELDS], work[group * WORK_FIELDS + 1],
                             work[group * WORK_FIELDS + 2])
        q_start, q_len, new_start, new_len, cache_len, table_start = seqlen_info(seqlens, b)
        kv_len = cache_len + new_len
        # this work-group's keys: positions [lo, hi) of the sequence
        lo = split * SPLIT_KEYS
        hi = min(kv_len, lo + SPLIT_KEYS)
        heads_per_kv = num_heads_q // num_heads_kv
        rows = q_len * heads_per_kv
        for r in range(rows):
            token, head = row_token_head(r, q_start, kv_head, heads_per_kv)
            load(q_rows, r, q, (token * num_heads_q + head) * D, lane)
            for c in range(0, W, N):
                q_rows[u64(r * W + c) + u64(lane)] *= scale_log2
                acc[u64(r * W + c) + u64(lane)] = numba.float32(0.0)
            stats[u64(3 * r * N) + u64(lane)] = NEG_INF
            stats[u64((3 * r + 1) * N) + u64(lane)] = numba.float32(0.0)
        visible_end, unmasked_end = visible_ranges(causal, 0, q_len - 1, q_len, kv_len)
        visible_end, unmasked_end = min(visible_end, hi), min(unmasked_end, hi)

        # the cache, then the new keys (as in fmha.kernel: one call site, one copy of
        # the tile code); this work-group's part of each is [row_begin, row_end)
        for phase in range(2):
            page_size, page_stride, row_stride, head_stride = (
                sources[phase * SOURCE_FIELDS], sources[phase * SOURCE_FIELDS + 1],
                sources[phase * SOURCE_FIELDS + 2], sources[phase * SOURCE_FIELDS + 3])
            if phase == 0:
                k_src, v_src, table, start, first_pos = (k_cache, v_cache, page_table_,
                                                         table_start, 0)
                base = kv_head * head_stride
                row_begin, row_end = min(lo, cache_len), min(hi, cache_len)
            else:
                k_src, v_src, table, start, first_pos = (k_new, v_new, one_page, 0,
                                                         cache_len)
                base = new_start * row_stride + kv_head * head_stride
                row_begin, row_end = max(lo - cache_len, 0), max(hi - cache_len, 0)
            attend_source(q_rows, acc, probs, stats, k_tile, v_tile, k_src, v_src, table,
                          start, page_size, page_stride, row_stride, base, row_begin,
                          row_end, first_pos, visible_end, unmasked_end, rows, heads_per_kv,
                          causal, q_len, kv_len, lane)

        if kv_len > SPLIT_KEYS:  # one split of several: leave (m, l, acc) to combine
            for r in range(rows):
                at = u64(group * R + r)
                for c in range(0, W, N):
                    partial_acc[at * u64(W) + u64(c + lane)] = acc[u64(r * W + c) + u64(lane)]
                if lane < 2:
                    partial_ml[at * u64(2) + u64(lane)] = stats[u64((3 * r + lane) * N)
                                                                + u64(lane)]
            return

        total_q = lse.shape[0] // num_heads_q
        for r in range(rows):
            token, head = row_token_head(r, q_start, kv_head, heads_per_kv)
            m = stats[u64(3 * r * N) + u64(lane)]
            l = stats[u64((3 * r + 1) * N) + u64(lane)]
            inv_l, row_lse = softmax_finalize(m, l)
            out_row = (token * num_heads_q + head) * D
            for c in range(0, W, N):
                if c + lane < D:
                    out[u64(out_row + c) + u64(lane)] = store(
                        acc[u64(r * W + c) + u64(lane)] * inv_l)
            lse[u64(head) * u64(total_q) + u64(token)] = row_lse

    return fmha_decode


@xetile.factory
def decode_combine_kernel(config: DecodeConfig):
    """Merges the splits of long sequences (see ``SPLIT_KEYS``), in split order.

    A work-group (``lanes`` work-items splitting D) per (sequence, KV head) that was
    split: with ``w_s = 2 ** (m_s - m)``, ``m = max_s m_s``:
    ``O = sum_s w_s acc_s / sum_s w_s l_s``, and the lse from ``(m, sum_s w_s l_s)``.
    ``combine`` entries: (sequence, KV head, its first work item of the decode launch).
    """
    N, D, W, R = config.lanes, config.head_dim, config.tile_width, config.max_rows
    store = STORAGE[config.dtype].store

    @xetile.kernel(sub_group_size=N)
    def fmha_decode_combine(item: kapi.NdItem, seqlens, combine, partial_acc, partial_ml,
                            out, lse, num_heads_q, num_heads_kv):
        lane = item.get_local_id(0)
        group = item.get_group().get_group_id(0)
        b, kv_head, first_item = (combine[group * WORK_FIELDS],
                                  combine[group * WORK_FIELDS + 1],
                                  combine[group * WORK_FIELDS + 2])
        q_start, q_len, new_start, new_len, cache_len, table_start = seqlen_info(seqlens, b)
        splits = (cache_len + new_len + SPLIT_KEYS - 1) // SPLIT_KEYS
        heads_per_kv = num_heads_q // num_heads_kv
        total_q = lse.shape[0] // num_heads_q
        for r in range(q_len * heads_per_kv):
            first = u64((first_item * R + r) * 2)  # this row's (m, l) in split 0
            m = NEG_INF
            for s in range(splits):
                m = max(m, partial_ml[first + u64(s * R * 2)])
            shift = m if m != NEG_INF else numba.float32(0.0)
            l = numba.float32(0.0)
            for s in range(splits):
                at = first + u64(s * R * 2)
                l += fastmath.exp2(partial_ml[at] - shift) * partial_ml[at + u64(1)]
            inv_l, row_lse = softmax_finalize(m, l)
            token, head = row_token_head(r, q_start, kv_head, heads_per_kv)
            out_row = (token * num_heads_q + head) * D
            for c in range(0, W, N):
                o = numba.float32(0.0)
                for s in range(splits):
                    w = fastmath.exp2(partial_ml[first + u64(s * R * 2)] - shift)
                    o += w * partial_acc[u64(((first_item + s) * R + r) * W + c + lane)]
                if c + lane < D:
                    out[u64(out_row + c) + u64(lane)] = store(o * inv_l)
            if lane == 0:
                lse[u64(head) * u64(total_q) + u64(token)] = row_lse

    return fmha_decode_combine


def decode_local_tiles(config: DecodeConfig):
    """The local-memory scratch of one launch: q_rows, acc, probs, stats, k_tile, v_tile."""
    W, R, N = config.tile_width, config.max_rows, config.lanes
    tile = N * W if config.stage else 1
    return tuple(kapi.LocalAccessor(size, np.float32)
                 for size in (R * W, R * W, R * N, 3 * R * N, tile, tile))
