"""Tiles: moving rows of a global array into a work-group's local tile and back.

A *local tile* is a ``LocalAccessor`` of float32 that one sub-group (one work-group of
``lanes`` work-items) owns. Two layouts are used:

* **row tile** ``[rows, width]`` (row-major): K and V tiles. Staged with the lanes split
  across the columns of one row, so every load and store is contiguous across lanes.
  A row that is out of range is filled with 0 (never read), and the ``width - valid``
  padding columns of each row are 0, so any head dim works with a tile width that is a
  multiple of the lane count.
* **lane tile** ``[width, lanes]`` (the lane index fastest): Q tiles and the output
  accumulator, where lane ``i`` owns row ``i``. ``tile[c * lanes + lane]`` is then one
  contiguous vector per column ``c``.

Every index is an unsigned 64-bit integer: numba adds a negative-index check to signed
indexing, and the CPU runtime then compiles the access to a gather (measured: 2.4x slower
staging). :func:`tile_ops` builds the functions for one (dtype, width, valid, lanes).
"""
from __future__ import annotations

from typing import NamedTuple

import numba
import numba_dpex as dpex
from numba import uint64 as u64

from xetile.dtypes import storage
from xetile.kernel import factory, kernel


class TileOps(NamedTuple):
    stage_row: object         # (tile, tile_row, src, src_start, lane)
    zero_row: object          # (tile, tile_row, lane)
    load_lane_tile: object    # (tile, tile_start, src, row_start, row_valid, scale, lane)
    zero_lane_tile: object    # (tile, tile_start, lane)
    store_lane_tile: object   # (dst, row_start, row_valid, tile, tile_start, scale, lane)


@factory
def tile_ops(dtype: str, width: int, valid: int, lanes: int) -> TileOps:
    """Tile movers for elements of ``dtype``, rows of ``valid`` columns padded to ``width``.

    Parameters
    ----------
    dtype : {"float32", "float16", "bfloat16"}
        Storage of the global arrays; tiles are always float32.
    width : int
        Columns of a tile row, a multiple of ``lanes``.
    valid : int
        Columns that exist in the global array (``valid <= width``).
    lanes : int
        Work-items of the sub-group that owns the tile.
    """
    if width % lanes or not 0 < valid <= width:
        raise ValueError(f"tile_ops: need width % lanes == 0 and 0 < valid <= width, "
                         f"got width={width}, valid={valid}, lanes={lanes}")
    load = storage(dtype).load
    store = storage(dtype).store
    padded = valid != width

    @dpex.device_func
    def stage_row(tile, tile_row, src, src_start, lane):
        """``tile[tile_row, :] = src[src_start : src_start + valid]`` (+ zero padding)."""
        dst = u64(tile_row) * u64(width) + u64(lane)
        src_lane = u64(src_start) + u64(lane)
        if padded:
            for c0 in range(0, width, lanes):
                x = numba.float32(0.0)
                if c0 + lane < valid:
                    x = load(src[src_lane + u64(c0)])
                tile[dst + u64(c0)] = x
        else:
            for c0 in range(0, width, lanes):
                tile[dst + u64(c0)] = load(src[src_lane + u64(c0)])

    @dpex.device_func
    def zero_row(tile, tile_row, lane):
        """``tile[tile_row, :] = 0``."""
        dst = u64(tile_row) * u64(width) + u64(lane)
        for c0 in range(0, width, lanes):
            tile[dst + u64(c0)] = numba.float32(0.0)

    @dpex.device_func
    def load_lane_tile(tile, tile_start, src, row_start, row_valid, scale, lane):
        """Lane tile at ``tile_start``: ``[c, lane] = scale * src[row_start + c]`` (0 where
        not valid). ``row_start`` is this lane's own row: a gather, done once per tile.
        """
        at = u64(tile_start) + u64(lane)
        for c in range(width):
            x = numba.float32(0.0)
            if row_valid and c < valid:
                x = load(src[u64(row_start) + u64(c)]) * scale
            tile[at + u64(c) * u64(lanes)] = x

    @dpex.device_func
    def zero_lane_tile(tile, tile_start, lane):
        at = u64(tile_start) + u64(lane)
        for c in range(width):
            tile[at + u64(c) * u64(lanes)] = numba.float32(0.0)

    @dpex.device_func
    def store_lane_tile(dst, row_start, row_valid, tile, tile_start, scale, lane):
        """``dst[row_start + c] = scale * tile[c, lane]`` (the lane tile at
        ``tile_start``) for this lane's valid row."""
        if row_valid:
            at = u64(tile_start) + u64(lane)
            for c in range(valid):
                dst[u64(row_start) + u64(c)] = store(tile[at + u64(c) * u64(lanes)] * scale)

    return TileOps(stage_row, zero_row, load_lane_tile, zero_lane_tile, store_lane_tile)


# Depth entries one work-item packs: one work-group per entry was dominated by
# work-group start-up cost.
PACK_DEPTH_CHUNK = 64


@factory
def pack_panels_kernel(dtype: str, width: int, rows_are_panels: bool):
    """A kernel that packs a matrix into panels of ``width``, converting to float32.

    ``pack(x, panels, rows, cols, depth)`` with ``x`` the flat ``[rows, cols]`` source:

    * ``rows_are_panels=False`` (B of a GEMM): panels of ``width`` columns,
      ``panels[p, r, c] = x[r, p * width + c]``, shape ``[ceil(cols/width), rows, width]``;
    * ``rows_are_panels=True`` (A of a GEMM): panels of ``width`` rows,
      ``panels[p, c, r] = x[p * width + r, c]``, shape ``[ceil(rows/width), cols, width]``.

    Launch over ``(width, ceil(depth / PACK_DEPTH_CHUNK), n_panels)`` with work-groups
    ``(width, 1, 1)``; lanes run along the panel's contiguous last axis, so every store
    is contiguous. Entries past the matrix are 0.
    """
    load = storage(dtype).load

    @kernel(sub_group_size=width)
    def pack(item, x, panels, rows, cols, depth):
        lane = item.get_global_id(0)
        panel = item.get_global_id(2)
        first = item.get_global_id(1) * PACK_DEPTH_CHUNK
        for d in range(first, min(first + PACK_DEPTH_CHUNK, depth)):
            if rows_are_panels:
                row, col = panel * width + lane, d
            else:
                row, col = d, panel * width + lane
            value = numba.float32(0.0)
            if row < rows and col < cols:
                value = load(x[u64(row) * u64(cols) + u64(col)])
            panels[(u64(panel) * u64(depth) + u64(d)) * u64(width) + u64(lane)] = value

    return pack
