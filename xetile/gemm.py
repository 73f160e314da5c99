"""A GEMM written with xetile: ``C = A @ B``, the DSL's first user and its benchmark.

Mapping (the one measured fastest on the CPU runtime, see :mod:`xetile.mma`): a
work-group is one sub-group of ``lanes`` work-items and owns a ``block_m x lanes`` block
of C; lane ``j`` owns column ``j`` of the block and keeps ``block_m`` sums in registers.
For each k it loads ``B[k, j]`` (contiguous across lanes) and the ``block_m`` values
``A[i, k]`` every lane shares.

Both operands are *packed* first, as BLAS libraries do (A is read in place when that is
safe and no slower, see :func:`matmul`): A into row panels
``[M/block_m, K, block_m]`` and B into column panels ``[N/lanes, K, lanes]``, zero-padded
to whole panels. Each work-group then streams two contiguous panels, one cache line of
each per k. Unpacked, the k-th rows of a column panel are N floats apart, which for
N = 1024 or 2048 (4 or 8 KiB) all fall into one L1 set: measured 41 GFLOP/s at N = 2048.
Packing also converts float16 / bfloat16 inputs to float32, once per element, and makes
ragged shapes (not multiples of the block) free of masks. C is float32.
"""
from __future__ import annotations

import numpy as np
from numba_dpex import kernel_api as kapi

from xetile.dtypes import dtype_name, reinterpret, storage
from xetile.kernel import factory, kernel, launch
from xetile.tile import PACK_DEPTH_CHUNK, pack_panels_kernel
from xetile.workspace import scratch
from xetile.mma import mma_abt, store_results

LANES = 16        # columns of C per work-group: one AVX-512 register of float32
BLOCK_M = 16      # rows of C per work-group: sums held in registers per lane
BAND_ROWS = 8     # row panels walked together, column by column (see gemm_kernel)


@factory
def gemm_kernel(block_m: int = BLOCK_M, lanes: int = LANES, band_rows: int = BAND_ROWS):
    """Work-groups visit C in bands of ``band_rows`` row panels, column panel by column
    panel, down each band: the runtime hands consecutive work-groups to one thread, so a
    B panel is read from memory once per band (then from cache ``band_rows - 1`` times)
    while the band's A panels stay in cache. In row-major order each work-group read its
    B panel from memory. Kernel alone at N = 2048, fp32: 187-195 GFLOP/s row-major,
    208-210 with bands of 4, 219-220 with 8 or 16 (no change at 512 and 1024)."""
    column_dot = mma_abt(block_m, lanes)
    store_column = store_results(block_m)

    @kernel(sub_group_size=lanes)
    def gemm(item: kapi.NdItem,
             a_panels,   # IN  float32 [M/block_m, K, block_m] (flat), or A [M, K] itself
             b_panels,   # IN  float32 [N/lanes, K, lanes]      (flat)
             c,          # OUT float32 [M, N]                   (flat)
             n_panels, k, m, n,
             a_packed):  # 1: a_panels is packed; 0: it is A, with M % block_m == 0
        lane = item.get_local_id(0)
        group = item.get_group().get_group_id(0)
        band_size = band_rows * n_panels  # work-groups per band
        band = group // band_size
        first_row = band * band_rows
        rows_in_band = min((m + block_m - 1) // block_m - first_row, band_rows)
        in_band = group - band * band_size
        row_panel = first_row + in_band % rows_in_band
        col_panel = in_band // rows_in_band
        a_start, a_row_pitch, a_pitch = row_panel * k * block_m, 1, block_m
        if a_packed == 0:
            a_start, a_row_pitch, a_pitch = row_panel * block_m * k, k, 1
        (sums,) = column_dot(b_panels, col_panel * k * lanes, 0, lanes,
                             a_panels, a_start, a_row_pitch, a_pitch, k, lane)
        row, col = row_panel * block_m, col_panel * lanes + lane
        if col < n:  # the last panels of a ragged M or N store what they have
            store_column(c, row * n + col, n, sums, m - row)

    return gemm


def matmul(a, b, out=None, dtype=None):
    """``a @ b`` for 2-D float32, float16 or bfloat16 arrays (numpy or dpnp).

    Parameters
    ----------
    a : array ``[M, K]``
    b : array ``[K, N]``
        float32 or float16 (numpy or dpnp), bfloat16 (numpy ``ml_dtypes.bfloat16``), or
        ``uint16`` arrays holding float16 / bfloat16 bits (numpy or dpnp; dpnp has no
        bfloat16), with ``dtype``. Both of one dtype.
    out : dpnp float32 array ``[M, N]``, C-contiguous, optional
        Written in place and returned (saves the first-touch page faults of a fresh
        result, as ``numpy.matmul(..., out=)`` does on the host).
    dtype : {"float16", "bfloat16"}, optional
        What the bits of ``uint16`` inputs are; required for them, refused for others
        (checked by :func:`pack_panels`, before any kernel runs).

    Returns
    -------
    float32 array ``[M, N]``, dpnp if either input is dpnp, else numpy.

    Examples
    --------
    >>> import numpy as np
    >>> from xetile.gemm import matmul
    >>> matmul(np.ones((3, 5), np.float32), np.ones((5, 2), np.float32))
    array([[5., 5.],
           [5., 5.],
           [5., 5.]], dtype=float32)
    """
    import dpnp

    device_in = isinstance(a, dpnp.ndarray) or isinstance(b, dpnp.ndarray)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: expected a [M, K] and b [K, N], got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise TypeError(f"matmul: a and b must share a dtype, got {a.dtype} and {b.dtype}")
    m, k = a.shape
    n = b.shape[1]
    if out is not None and (not isinstance(out, dpnp.ndarray) or out.dtype != np.float32
                            or tuple(out.shape) != (m, n) or not out.flags.c_contiguous):
        raise ValueError(f"out: expected a C-contiguous dpnp float32 array of shape "
                         f"{(m, n)}, got {type(out).__name__} "
                         f"{getattr(out, 'dtype', '')} {tuple(getattr(out, 'shape', ()))}")
    # A is read in place when its row panels are whole, it is float32 on the device and
    # its rows are not a multiple of 4 KiB apart (the block's 16 rows would share L1
    # sets: 90 vs 193 GFLOP/s measured at K = 1024, see STACK.md); else packed. At
    # N = 512, best of 15, interleaved: pack A + kernel 1.62 ms, kernel on A in place 1.37.
    a_in_place = (isinstance(a, dpnp.ndarray) and a.dtype == np.float32
                  and m % BLOCK_M == 0 and (4 * k) % 4096 != 0)
    if a_in_place:
        a_panels, m_panels = dpnp.ascontiguousarray(a), m // BLOCK_M
    else:
        a_panels = pack_panels(a, BLOCK_M, rows_are_panels=True, name="gemm.a", dtype=dtype)
        m_panels = a_panels.shape[0]
    b_panels = pack_panels(b, LANES, rows_are_panels=False, name="gemm.b", dtype=dtype)
    n_panels = b_panels.shape[0]
    c = out if out is not None else dpnp.empty((m, n), dtype=np.float32,
                                               sycl_queue=a_panels.sycl_queue)
    if k == 0:
        c[...] = 0
    elif m_panels and n_panels:
        launch(gemm_kernel(), (m_panels * n_panels * LANES,), (LANES,),
               a_panels.reshape(-1), b_panels.reshape(-1), c.reshape(-1), n_panels, k, m, n,
               0 if a_in_place else 1)
    return c if device_in or out is not None else dpnp.asnumpy(c)


def pack_panels(x, width, rows_are_panels, name=None, dtype=None):
    """``x [R, C]`` (numpy or dpnp, float32 / float16 / bfloat16, or ``uint16`` bits of
    ``dtype``) packed by :func:`xetile.tile.pack_panels_kernel` into a float32 dpnp array
    ``[panels, depth, width]``; in the reusable scratch buffer ``name`` if given."""
    import dpnp

    if (x.dtype == np.uint16) != (dtype is not None) or dtype not in (
            None, "float16", "bfloat16"):
        raise TypeError(f"dtype: expected 'float16' or 'bfloat16' for uint16 bits and "
                        f"nothing for float inputs, got dtype={dtype!r} for {x.dtype} inputs")
    dtype = dtype or dtype_name(x.dtype)
    dev = storage(dtype).device_dtype
    if isinstance(x, np.ndarray):
        flat = dpnp.asarray(np.ascontiguousarray(x).view(dev).reshape(-1))
    else:
        flat = dpnp.ascontiguousarray(x)
        flat = (flat if flat.dtype == dev else reinterpret(flat, dev)).reshape(-1)
    rows, cols = x.shape
    panels = -(-(rows if rows_are_panels else cols) // width)
    depth = cols if rows_are_panels else rows
    count = panels * depth * width
    out = (scratch(name, count, queue=flat.sycl_queue) if name else
           dpnp.empty(count, dtype=np.float32, sycl_queue=flat.sycl_queue))
    out = out.reshape(panels, depth, width)
    if panels and depth:
        chunks = -(-depth // PACK_DEPTH_CHUNK)
        launch(pack_panels_kernel(dtype, width, rows_are_panels), (width, chunks, panels),
               (width, 1, 1), flat, out.reshape(-1), rows, cols, depth)
    return out
