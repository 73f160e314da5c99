"""The (sequence, token) -> row mapping of a paged pool, and of everything else.

A *row source* is where the rows (tokens) of one sequence's K or V live in a flat array:

    row t of the sequence starts at element
        base + page_table[table_start + t // page_size] * page_stride
             + (t % page_size) * row_stride

This one formula covers every cache the kernel reads:

==============================  ==========  ============  ============  ==========
source                          page_size   page_stride   row_stride    table
==============================  ==========  ============  ============  ==========
paged pool NHD [P, ps, H, D]    ps          ps*H*D        H*D           page_table
paged pool HND [P, H, ps, D]    ps          H*ps*D        D             page_table
contiguous NHD [B, S, H, D]     S           S*H*D         H*D           [[0],[1],..]
contiguous HND [B, H, S, D]     S           H*S*D         D             [[0],[1],..]
==============================  ==========  ============  ============  ==========

(``base`` adds the head: ``h*D`` for NHD, ``h*ps*D`` for HND.) A contiguous cache is a
pool with one page per sequence, so the kernel cannot tell the two apart.

A tile walks its rows in order with a :func:`row_cursor`: the page-table entry is read
once per page (and the division once per tile), not once per row; page size 1 costs one
table read per row.
"""
from __future__ import annotations

import numba_dpex as dpex
from numba import uint64 as u64

from xetile._codegen import device_function, names
from xetile.kernel import factory
from xetile.tile import TileOps


@dpex.device_func
def row_cursor(page_table, table_start, page_size, t):
    """Cursor at row ``t``: ``(slot, offset, page)`` with ``page = page_table[slot]``."""
    slot = u64(t) // u64(page_size)
    offset = u64(t) - slot * u64(page_size)
    page = u64(page_table[u64(table_start) + slot])
    return slot, offset, page


@dpex.device_func
def next_row(page_table, table_start, page_size, slot, offset, page):
    """The cursor one row further (reads the table only when a page boundary is crossed)."""
    offset += u64(1)
    if offset == u64(page_size):
        offset = u64(0)
        slot += u64(1)
        page = u64(page_table[u64(table_start) + slot])
    return slot, offset, page


@dpex.device_func
def row_start(base, page, offset, page_stride, row_stride):
    """Element index of the first element of the row under the cursor."""
    return u64(base) + page * u64(page_stride) + offset * u64(row_stride)


@factory
def gather_rows(ops: TileOps, rows: int):
    """``gather(tile, src, table, table_start, page_size, base, page_stride, row_stride,
    first, end, lane)``: stage rows ``first .. first+rows-1`` of a row source into a row
    tile; rows at or past ``end`` are zero and are never read (so the table is never
    read past the pages that hold valid rows).
    """
    stage_row, zero_row = ops.stage_row, ops.zero_row

    @dpex.device_func
    def gather(tile, src, table, table_start, page_size, base, page_stride, row_stride,
               first, end, lane):
        slot = offset = page = u64(0)
        if first < end:
            slot, offset, page = row_cursor(table, table_start, page_size, first)
        for j in range(rows):
            if first + j < end:
                if j > 0:
                    slot, offset, page = next_row(table, table_start, page_size,
                                                  slot, offset, page)
                stage_row(tile, j, src,
                          row_start(base, page, offset, page_stride, row_stride), lane)
            else:
                zero_row(tile, j, lane)
    return gather


@factory
def row_starts(rows: int):
    """``row_starts(table, table_start, page_size, base, page_stride, row_stride, first,
    end) -> (start_0, ..., start_{rows-1})``: the element offset of rows ``first + j``
    of a row source, for reading them in place (:func:`xetile.mma.vec_mat_t`).

    Needs ``first < end``. Rows at or past ``end`` get row ``first``'s offset: a caller
    that masks them still reads only valid rows, and the table is never read past the
    pages that hold valid rows. The same for every lane (sub-group uniform).
    """
    body = ["def row_starts(table, table_start, page_size, base, page_stride, row_stride,",
            "               first, end):",
            "    slot, offset, page = row_cursor(table, table_start, page_size, first)",
            "    s0 = row_start(base, page, offset, page_stride, row_stride)"]
    for j in range(1, rows):
        body += [f"    s{j} = s0",
                 f"    if first + {j} < end:",
                 "        slot, offset, page = next_row(table, table_start, page_size,",
                 "                                      slot, offset, page)",
                 f"        s{j} = row_start(base, page, offset, page_stride, row_stride)"]
    body.append(f"    return ({names('s', rows)},)")
    namespace = {"row_cursor": row_cursor, "next_row": next_row, "row_start": row_start}
    return device_function("\n".join(body), "row_starts", namespace)
