"""The flash-attention forward kernel: one online-softmax pass over the cache, then the new KV.

Work decomposition (FlashAttention-2's, with GQA packing):

* For sequence b and KV head hk, the *rows* are the (query, head) pairs that share hk:
  row ``r = i * G + g`` is query i of head ``hk * G + g`` (G = Hq / Hkv). Packing the G
  heads of a group into one tile makes every K/V tile serve G heads at once.
* A work-group is one sub-group of ``block_m`` lanes and owns ``row_tiles`` tiles of
  ``block_m`` consecutive rows; **lane = row** (of each tile). Its Q rows (scaled by
  ``softmax_scale * log2 e``) and its output accumulators live in lane tiles of a global
  workspace (:mod:`xetile.tile`, :mod:`xetile.workspace`); local memory holds the K and
  V tiles only.
* It walks KV tiles of ``block_n`` keys: phase 1 the cache (through the page table, or
  the contiguous cache seen as one page per sequence), phase 2 the new keys. Each tile is
  gathered once into a local row tile (which also converts 16-bit storage to float32,
  zero-fills rows past the end and de-aliases the 4 KiB key pitch of NHD layouts), then
  (:func:`tile_step`) ``S = Q Kᵀ`` for all row tiles at once (registers), online
  softmax, ``O = alpha O + P V`` for all row tiles at once: each K or V value loaded
  serves every row tile (:mod:`xetile.mma`).
* Per phase, tiles that every row sees in full run without a mask; boundary and
  causal-diagonal tiles run with one; tiles no row sees are skipped
  (:mod:`fmha.block_info`).

Nothing is shared between work-groups and the reduction order is fixed, so results are
bitwise reproducible and independent of what else is in the batch.
"""
from __future__ import annotations

import numba
import numba_dpex as dpex
import numpy as np
from numba import uint64 as u64
from numba_dpex import kernel_api as kapi

import xetile
from xetile import mma, page_table, rowstats, tile, workspace
from xetile._codegen import device_function, names

from fmha.block_info import make_block_range
from fmha.config import FmhaConfig
from fmha.mask import key_limit, visible_ranges
from fmha.seqlen_info import seqlen_info
from fmha.softmax import make_softmax

# Fields of one work item in the ``work`` table: sequence, KV head, first row.
WORK_FIELDS = 3
# Fields of a row source in the ``sources`` table (see xetile.page_table):
# page_size, page_stride, row_stride, head_stride.
SOURCE_FIELDS = 4


@xetile.factory
def attention_kernel(config: FmhaConfig):
    """The compiled kernel for ``config`` (once per process)."""
    config.can_implement()
    M, N, D, W = config.block_m, config.block_n, config.head_dim, config.tile_width
    R = config.row_tiles
    ops = tile.tile_ops(config.dtype, W, D, M)
    gather = page_table.gather_rows(ops, N)
    block_range = make_block_range(N)
    softmax_finalize = make_softmax(N)[1]
    attend_tile = tile_step(config)

    @dpex.device_func
    def attend_source(q_tiles, q_base, acc, k_tile, v_tile, k_src, v_src, table,
                      table_start, page_size, page_stride, row_stride, base, n_keys,
                      first_pos, visible_end, unmasked_end, causal, first_row,
                      heads_per_kv, q_len, kv_len, m, l, lane):
        """Fold the keys of one row source into every row tile's (acc, m, l)."""
        n_unmasked, n_blocks = block_range(n_keys, first_pos, visible_end, unmasked_end)
        for block in range(n_blocks):
            first = block * N
            gather(k_tile, k_src, table, table_start, page_size, base, page_stride,
                   row_stride, first, n_keys, lane)
            gather(v_tile, v_src, table, table_start, page_size, base, page_stride,
                   row_stride, first, n_keys, lane)
            attend_tile(q_tiles, q_base, acc, k_tile, v_tile, block >= n_unmasked,
                        first_pos + first, first_pos + n_keys, causal, first_row,
                        heads_per_kv, q_len, kv_len, m, l, lane)
        return 0

    @xetile.kernel(sub_group_size=M)
    def fmha_forward(
        item: kapi.NdItem,
        q,            # IN  [total_q * Hq * D]        storage dtype
        k_new,        # IN  [total_kv * Hkv * D]
        v_new,        # IN  [total_kv * Hkv * D]
        k_cache,      # IN  cache or pool, flat (layout in `sources`)
        v_cache,      # IN  same shape as k_cache
        page_table_,  # IN  int64 [B * pages_per_seq]  (one page per sequence if contiguous)
        one_page,     # IN  int64 [1] = [0]: the "page table" of the new keys
        seqlens,      # IN  int64 [B, SEQ_FIELDS]      (fmha.seqlen_info)
        work,         # IN  int64 [n_groups, WORK_FIELDS]
        sources,      # IN  int64 [2, SOURCE_FIELDS]  cache, new keys
        out,          # OUT [total_q * Hq * D]        storage dtype
        lse,          # OUT float32 [Hq * total_q]
        q_tiles,      # SCRATCH global float32 [n_groups, R, W, M] (lane tiles)
        acc,          # SCRATCH global float32 [n_groups, R, W, M] (lane tiles)
        k_tile,       # SCRATCH local float32 [N, W]     (row tile)
        v_tile,       # SCRATCH local float32 [N, W]     (row tile)
        num_heads_q,
        num_heads_kv,
        causal,
        scale_log2,   # softmax_scale * log2(e), float32
    ):
        lane = item.get_local_id(0)
        group = item.get_group().get_group_id(0)
        b, kv_head, first_row = (work[group * WORK_FIELDS], work[group * WORK_FIELDS + 1],
                                 work[group * WORK_FIELDS + 2])
        q_start, q_len, new_start, new_len, cache_len, table_start = seqlen_info(seqlens, b)
        kv_len = cache_len + new_len
        heads_per_kv = num_heads_q // num_heads_kv
        q_base = group * R * W * M  # this work-group's lane tiles, in q_tiles and acc
        total_q = lse.shape[0] // num_heads_q

        # row tile t, this lane: row first_row + t*M + lane = query `query` of head `head`
        m = kapi.PrivateArray(R, numba.float32)
        l = kapi.PrivateArray(R, numba.float32)
        for t in range(R):
            row = first_row + t * M + lane
            query, head = row // heads_per_kv, kv_head * heads_per_kv + row % heads_per_kv
            ops.load_lane_tile(q_tiles, q_base + t * W * M, q,
                               ((q_start + query) * num_heads_q + head) * D, query < q_len,
                               scale_log2, lane)
            ops.zero_lane_tile(acc, q_base + t * W * M, lane)
            m[t] = numba.float32(-np.inf)
            l[t] = numba.float32(0.0)

        last_row = min(first_row + R * M, q_len * heads_per_kv) - 1
        visible_end, unmasked_end = visible_ranges(
            causal, first_row // heads_per_kv, last_row // heads_per_kv, q_len, kv_len)

        # phase 0: the cache, keys 0 .. cache_len-1; phase 1: the new keys, cache_len ..
        # kv_len-1 (one page holding every row). A loop, not two calls: the tile code
        # is then compiled once, which halves the kernel's code and its device build
        for phase in range(2):
            page_size, page_stride, row_stride, head_stride = (
                sources[phase * SOURCE_FIELDS], sources[phase * SOURCE_FIELDS + 1],
                sources[phase * SOURCE_FIELDS + 2], sources[phase * SOURCE_FIELDS + 3])
            if phase == 0:
                k_src, v_src, table, start, n_keys, first_pos = (
                    k_cache, v_cache, page_table_, table_start, cache_len, 0)
                base = kv_head * head_stride
            else:
                k_src, v_src, table, start, n_keys, first_pos = (
                    k_new, v_new, one_page, 0, new_len, cache_len)
                base = new_start * row_stride + kv_head * head_stride
            attend_source(q_tiles, q_base, acc, k_tile, v_tile, k_src, v_src, table, start,
                          page_size, page_stride, row_stride, base, n_keys, first_pos,
                          visible_end, unmasked_end, causal, first_row, heads_per_kv,
                          q_len, kv_len, m, l, lane)

        for t in range(R):
            row = first_row + t * M + lane
            query, head = row // heads_per_kv, kv_head * heads_per_kv + row % heads_per_kv
            inv_l, row_lse = softmax_finalize(m[t], l[t])
            ops.store_lane_tile(out, ((q_start + query) * num_heads_q + head) * D,
                                query < q_len, acc, q_base + t * W * M, inv_l, lane)
            if query < q_len:
                lse[u64(head) * u64(total_q) + u64(q_start + query)] = row_lse

    return fmha_forward


@xetile.factory
def tile_step(config: FmhaConfig):
    """``tile_step(q_tiles, q_base, acc, k_tile, v_tile, masked, key_first, key_end, causal,
    first_row, heads_per_kv, q_len, kv_len, m, l, lane)``: one staged K/V tile folded
    into the work-group's ``row_tiles`` row tiles.

    ``S_t = Q_t Kᵀ`` for every row tile ``t`` (each K value loaded serves two of
    them, :func:`xetile.mma.mma_abt`), the mask (when
    ``masked``: keys at positions ``key_first + j``, those ``>= key_end`` or past the
    row's causal limit are ``-inf``), the online softmax of each row tile
    (``m[t]``, ``l[t]``), then ``O_t = alpha_t O_t + P_t V`` (each V value loaded once for
    all of them, :func:`xetile.mma.mma_ab`). The Q and
    O lane tiles of row tile ``t`` are at ``q_base + t * W * M`` in ``q_tiles`` and
    ``acc``. Unrolled over the row tiles (generated source: ``__xetile_source__``).
    """
    M, N, W, R = config.block_m, config.block_n, config.tile_width, config.row_tiles
    tile_size = W * M
    body = ["def tile_step(q_tiles, q_base, acc, k_tile, v_tile, masked, key_first, key_end,",
            "              causal, first_row, heads_per_kv, q_len, kv_len, m, l, lane):",
            f"    scores = scores_of(q_tiles, q_base, {tile_size}, {M}, k_tile, 0, {W}, 1, {W},"
            " lane)"]
    for t in range(R):
        body += [f"    s{t} = scores[{t}]",
                 "    if masked:",
                 f"        query = (first_row + {t * M} + lane) // heads_per_kv",
                 f"        s{t} = mask(s{t}, key_first, key_end, "
                 "key_limit(causal, query, q_len, kv_len))",
                 f"    p{t}, m{t}, l{t}, alpha{t} = softmax_update(s{t}, m[{t}], l[{t}])",
                 f"    m[{t}] = m{t}",
                 f"    l[{t}] = l{t}"]
    body += [f"    accumulate(({names('p', R)},), v_tile, acc, q_base, {tile_size}, "
             f"({names('alpha', R)},), lane)",
             "    return 0"]
    namespace = {"scores_of": mma.mma_abt(N, M, R), "accumulate": mma.mma_ab(N, W, M, R),
                 "mask": rowstats.mask_row(N), "softmax_update": make_softmax(N)[0],
                 "key_limit": key_limit}
    return device_function("\n".join(body), "tile_step", namespace)


def scratch_tiles(config: FmhaConfig, n_groups: int, queue=None):
    """The scratch of one launch: the Q and output lane tiles (reused global workspaces,
    one slot per work-group), then the K and V row tiles (local memory)."""
    W, M, N, R = config.tile_width, config.block_m, config.block_n, config.row_tiles
    lane_tiles = max(n_groups, 1) * R * W * M
    return (workspace.flat_scratch("fmha.q_tiles", lane_tiles, queue=queue),
            workspace.flat_scratch("fmha.acc_tiles", lane_tiles, queue=queue),
            kapi.LocalAccessor(N * W, np.float32), kapi.LocalAccessor(N * W, np.float32))
