"""xetile primitives against numpy: storage dtypes, tiles, page-table gather, the emulated
MMA, row statistics and the GEMM, on ragged shapes and at two sub-group sizes."""
import ml_dtypes
import numpy as np
import pytest

import xetile  # noqa: F401  (configures the runtime before dpnp)
import dpnp
from numba_dpex import kernel_api as kapi

from xetile import factory, kernel, launch, mma, page_table, rowstats, tile
from xetile._codegen import device_function
from xetile.dtypes import bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16, reinterpret
from xetile.gemm import matmul

LANE_COUNTS = (8, 16)


# -- storage dtypes ------------------------------------------------------------------

@factory
def _convert_kernel():
    @kernel(sub_group_size=16)
    def convert(item, x, bf_bits, f16_bits, bf_back, f16_back):
        i = item.get_global_id(0)
        bf_bits[i] = f32_to_bf16(x[i])
        f16_bits[i] = f32_to_f16(x[i])
        bf_back[i] = bf16_to_f32(bf_bits[i])
        f16_back[i] = f16_to_f32(f16_bits[i])
    return convert


def test_bf16_and_f16_conversions_match_numpy_bit_for_bit():
    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.standard_normal(200).astype(np.float32) * 100,
        np.array([0.0, -0.0, 1.0, 65504.0, 1e-8, np.inf, -np.inf, np.nan, 3.0e38],
                 np.float32),
        # ties: exactly half-way between two bf16 values
        (np.arange(7, dtype=np.uint32) * 0x10000 + 0x3F808000).view(np.float32),
    ]).astype(np.float32)
    x = np.concatenate([x, np.zeros(-len(x) % 16, np.float32)])
    n = len(x)
    outs = [dpnp.zeros(n, dtype=np.uint16), dpnp.zeros(n, dtype=np.uint16),
            dpnp.zeros(n, dtype=np.float32), dpnp.zeros(n, dtype=np.float32)]
    launch(_convert_kernel(), (n,), (16,), dpnp.asarray(x), *outs)
    bf_bits, f16_bits, bf_back, f16_back = (dpnp.asnumpy(o) for o in outs)
    expected_bf = x.astype(ml_dtypes.bfloat16).view(np.uint16)
    finite = ~np.isnan(x)
    np.testing.assert_array_equal(bf_bits[finite], expected_bf[finite])
    assert np.isnan(bf_bits.view(ml_dtypes.bfloat16)[~finite].astype(np.float32)).all()
    with np.errstate(over="ignore"):
        expected_f16 = x.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(f16_bits[finite], expected_f16[finite])
    np.testing.assert_array_equal(bf_back[finite],
                                  expected_bf[finite].view(ml_dtypes.bfloat16).astype(np.float32))
    np.testing.assert_array_equal(f16_back[finite], expected_f16[finite].view(np.float16)
                                  .astype(np.float32))


def test_reinterpret_shares_memory():
    x = dpnp.asarray(np.array([1.0, -2.0], np.float16))
    bits = reinterpret(x, np.uint16)
    np.testing.assert_array_equal(dpnp.asnumpy(bits),
                                  np.array([1.0, -2.0], np.float16).view(np.uint16))


# -- tiles and page-table gather -----------------------------------------------------

@factory
def _gather_kernel(dtype, width, valid, lanes, rows):
    ops = tile.tile_ops(dtype, width, valid, lanes)
    gather = page_table.gather_rows(ops, rows)

    @kernel(sub_group_size=lanes)
    def gather_tiles(item, src, table, geometry, out, scratch):
        lane = item.get_local_id(0)
        group = item.get_group().get_group_id(0)
        first = group * rows
        gather(scratch, src, table, geometry[0], geometry[1], geometry[2], geometry[3],
               geometry[4], first, geometry[5], lane)
        for j in range(rows):
            for c0 in range(0, width, lanes):
                out[(group * rows + j) * width + c0 + lane] = scratch[j * width + c0 + lane]
    return gather_tiles


@pytest.mark.parametrize("lanes", LANE_COUNTS)
@pytest.mark.parametrize("page_size", [1, 3, 7, 16])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_page_table_gather_equals_contiguous_rows(lanes, page_size, dtype):
    """Rows gathered through a shuffled page table, ragged valid length, padded width."""
    rng = np.random.default_rng(page_size)
    heads, head, valid, rows = 3, 1, 20, 4                # D = 20, tile width 24 or 32
    width = -(-valid // lanes) * lanes
    n_rows = 23                                           # not a multiple of the tile
    n_pages = -(-n_rows // page_size)
    pool_pages = n_pages + 2
    pool = np.full((pool_pages, page_size, heads, valid), np.nan, np.float32)
    table = rng.permutation(pool_pages)[:n_pages].astype(np.int32)
    logical = rng.standard_normal((n_rows, heads, valid)).astype(np.float32)
    for t in range(n_rows):
        pool[table[t // page_size], t % page_size] = logical[t]
    src = pool.astype(ml_dtypes.bfloat16).view(np.uint16) if dtype == "bfloat16" else pool
    # table_start, page_size, base (the head), page_stride, row_stride, valid rows
    geometry = np.array([0, page_size, head * valid, page_size * heads * valid,
                         heads * valid, n_rows], np.int64)
    groups = -(-n_rows // rows)
    out = dpnp.zeros(groups * rows * width, dtype=np.float32)
    launch(_gather_kernel(dtype, width, valid, lanes, rows), (groups * lanes,), (lanes,),
           dpnp.asarray(src.reshape(-1)), dpnp.asarray(table), dpnp.asarray(geometry), out,
           kapi.LocalAccessor(rows * width, np.float32))
    got = dpnp.asnumpy(out).reshape(groups * rows, width)
    expected = np.zeros_like(got)
    want = logical[:, head]
    if dtype == "bfloat16":
        want = want.astype(ml_dtypes.bfloat16).astype(np.float32)
    expected[:n_rows, :valid] = want
    np.testing.assert_array_equal(got, expected)


# -- MMA and row statistics ----------------------------------------------------------

@factory
def _mma_kernel(n, depth, lanes):
    ops = tile.tile_ops("float32", depth, depth, lanes)
    abt, ab = mma.mma_abt(n, lanes), mma.mma_ab(n, depth, lanes)
    top, exp2_row, mask = rowstats.row_max(n), rowstats.exp2_row(n), rowstats.mask_row(n)
    store = mma.store_results(n)

    @kernel(sub_group_size=lanes)
    def mma_check(item, a, b, scores, masked, c, stats, a_tile, b_tile, c_tile):
        lane = item.get_local_id(0)
        ops.load_lane_tile(a_tile, 0, a, lane * depth, True, 1.0, lane)
        for j in range(n):
            ops.stage_row(b_tile, j, b, j * depth, lane)
        ops.zero_lane_tile(c_tile, 0, lane)
        (s,) = abt(a_tile, 0, 0, lanes, b_tile, 0, depth, 1, depth, lane)
        store(scores, lane, lanes, s, n)
        m = mask(s, 3, n - 1, lane)       # column j is at 3 + j: seen if < n-1 and <= lane
        store(masked, lane, lanes, m, n)
        row_max = top(s, -np.inf)
        p, total = exp2_row(s, row_max)
        ab((p,), b_tile, c_tile, 0, 0, (0.5,), lane)
        ops.store_lane_tile(c, lane * depth, True, c_tile, 0, 1.0, lane)
        stats[lane * 2] = row_max
        stats[lane * 2 + 1] = total
    return mma_check


@pytest.mark.parametrize("lanes", LANE_COUNTS)
@pytest.mark.parametrize("n,depth", [(16, 64), (8, 48), (5, 16)])
def test_mma_and_row_statistics(lanes, n, depth):
    rng = np.random.default_rng(n)
    a = rng.standard_normal((lanes, depth)).astype(np.float32)
    b = rng.standard_normal((n, depth)).astype(np.float32)
    outs = [dpnp.zeros(n * lanes, dtype=np.float32), dpnp.zeros(n * lanes, dtype=np.float32),
            dpnp.zeros(lanes * depth, dtype=np.float32), dpnp.zeros(2 * lanes, dtype=np.float32)]
    launch(_mma_kernel(n, depth, lanes), (lanes,), (lanes,), dpnp.asarray(a.ravel()),
           dpnp.asarray(b.ravel()), *outs,
           *(kapi.LocalAccessor(size, np.float32) for size in
             (depth * lanes, n * depth, depth * lanes)))
    scores, masked, c, stats = (dpnp.asnumpy(o) for o in outs)
    s = (a.astype(np.float64) @ b.T.astype(np.float64))
    np.testing.assert_allclose(scores.reshape(n, lanes).T, s, rtol=1e-5, atol=1e-4)
    cols = np.arange(n)[None, :] + 3
    seen = (cols < n - 1) & (cols <= np.arange(lanes)[:, None])
    want_masked = np.where(seen, scores.reshape(n, lanes).T, -np.inf)
    np.testing.assert_array_equal(masked.reshape(n, lanes).T, want_masked)
    row_max = s.max(1)
    p = np.exp2(s - row_max[:, None])
    np.testing.assert_allclose(stats[0::2], row_max, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats[1::2], p.sum(1), rtol=1e-5)
    # c started at 0, so alpha * c + P @ B = P @ B
    np.testing.assert_allclose(c.reshape(lanes, depth), p @ b, rtol=1e-4, atol=1e-4)


@factory
def _mma_tiles_kernel(n, depth, lanes, tiles):
    """S_t = A_t Bᵀ and C_t = alpha_t C_t + S_t B for ``tiles`` lane tiles at once."""
    abt, ab = mma.mma_abt(n, lanes, tiles), mma.mma_ab(n, depth, lanes, tiles)
    store = mma.store_results(n)
    tile_size = depth * lanes
    alphas = tuple(np.float32(0.5 + t) for t in range(tiles))
    # a register tuple is indexed by constants only (a loop index over a tuple of tuples
    # crashes the CPU runtime's compiler), so the stores are unrolled here too
    store_all = device_function(
        "def store_all(scores, s, lane):\n" + "".join(
            f"    store(scores, {t * n * lanes} + lane, {lanes}, s[{t}], {n})\n"
            for t in range(tiles)), "store_all", {"store": store})

    @kernel(sub_group_size=lanes)
    def mma_tiles(item, a_tiles, b, c_tiles, scores):
        lane = item.get_local_id(0)
        s = abt(a_tiles, 0, tile_size, lanes, b, 0, depth, 1, depth, lane)
        store_all(scores, s, lane)
        ab(s, b, c_tiles, 0, tile_size, alphas, lane)
    return mma_tiles


def _run_mma_tiles(n, depth, lanes, tiles, a, b, c):
    """(scores [tiles, lanes, n], c [tiles, lanes, depth]) from the kernel; ``a`` and
    ``c`` are [tiles, lanes, depth] (row i of tile t is lane i's row)."""
    as_lane_tiles = lambda x: np.ascontiguousarray(x.transpose(0, 2, 1)).ravel()  # noqa: E731
    c_dev = dpnp.asarray(as_lane_tiles(c))
    scores = dpnp.zeros(tiles * n * lanes, dtype=np.float32)
    launch(_mma_tiles_kernel(n, depth, lanes, tiles), (lanes,), (lanes,),
           dpnp.asarray(as_lane_tiles(a)), dpnp.asarray(b.ravel()), c_dev, scores)
    return (dpnp.asnumpy(scores).reshape(tiles, n, lanes).transpose(0, 2, 1),
            dpnp.asnumpy(c_dev).reshape(tiles, depth, lanes).transpose(0, 2, 1))


@pytest.mark.parametrize("tiles", [2, 4, 8])
@pytest.mark.parametrize("n,depth", [(16, 32), (5, 24)])
def test_mma_tiles_share_loads_and_keep_each_rows_bits(tiles, n, depth):
    """Several row tiles at once: the reference's numbers, and for each tile the very
    bits that tile gets alone (a row's sum must not depend on its work-group's size)."""
    lanes = 16
    rng = np.random.default_rng(tiles * 100 + n)
    a = rng.standard_normal((tiles, lanes, depth)).astype(np.float32)
    b = rng.standard_normal((n, depth)).astype(np.float32)
    c = rng.standard_normal((tiles, lanes, depth)).astype(np.float32)
    scores, c_out = _run_mma_tiles(n, depth, lanes, tiles, a, b, c)
    for t in range(tiles):
        s = a[t].astype(np.float64) @ b.T.astype(np.float64)
        np.testing.assert_allclose(scores[t], s, rtol=1e-5, atol=1e-4)
        want = (0.5 + t) * c[t].astype(np.float64) + scores[t].astype(np.float64) @ b
        np.testing.assert_allclose(c_out[t], want, rtol=1e-4, atol=1e-4)
    one_scores, one_c = _run_mma_tiles(n, depth, lanes, 1, a[:1], b, c[:1])
    np.testing.assert_array_equal(scores[0], one_scores[0])
    np.testing.assert_array_equal(c_out[0], one_c[0])


# -- GEMM ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 7, 3), (33, 17, 45), (100, 64, 129),
                                   (16, 300, 16)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_gemm_matches_numpy_on_ragged_shapes(shape, dtype):
    m, k, n = shape
    rng = np.random.default_rng(m * n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    got = matmul(a, b)
    assert got.dtype == np.float32 and got.shape == (m, n)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.sqrt(k))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_gemm_takes_16_bit_bits_on_the_device(dtype):
    m, k, n = 19, 40, 23
    rng = np.random.default_rng(7)
    host_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    a = rng.standard_normal((m, k)).astype(host_dtype)
    b = rng.standard_normal((k, n)).astype(host_dtype)
    bits_a, bits_b = dpnp.asarray(a.view(np.uint16)), dpnp.asarray(b.view(np.uint16))
    got = dpnp.asnumpy(matmul(bits_a, bits_b, dtype=dtype))
    expected = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.sqrt(k))
    with pytest.raises(TypeError, match="dtype: expected 'float16' or 'bfloat16'"):
        matmul(bits_a, bits_b)
    with pytest.raises(TypeError, match="dtype: expected"):
        matmul(a.astype(np.float32), b.astype(np.float32), dtype=dtype)


def test_gemm_dpnp_in_dpnp_out_and_errors():
    a = dpnp.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    b = dpnp.asarray(np.ones((3, 4), np.float32))
    c = matmul(a, b)
    assert isinstance(c, dpnp.ndarray)
    np.testing.assert_array_equal(dpnp.asnumpy(c), np.full((2, 4), [[3.0], [12.0]]))
    with pytest.raises(ValueError, match=r"matmul: expected a \[M, K\]"):
        matmul(np.ones((2, 3), np.float32), np.ones((4, 2), np.float32))


@factory
def _vec_kernel(chunks, lanes, valid):
    dot_rows = mma.vec_mat_t(lanes, chunks, lanes, "float32", valid)
    axpy_rows = mma.vec_mat(lanes, chunks, lanes, "float32", valid)
    rows_of = page_table.row_starts(lanes)

    @kernel(sub_group_size=lanes)
    def vec_check(item, a, b, table, p, c, scores):
        lane = item.get_local_id(0)
        # B's rows are `valid` apart in b, through a one-page table (page_size = lanes)
        rows = rows_of(table, 0, lanes, 0, 0, valid, 0, lanes)
        scores[lane] = dot_rows(a, 0, b, rows, lane)
        axpy_rows(p, 0, b, rows, c, 0, 0.5, lane)
    return vec_check


@pytest.mark.parametrize("lanes", LANE_COUNTS)
@pytest.mark.parametrize("chunks, pad", [(1, 0), (3, 0), (8, 0), (3, 5), (1, 7)])
def test_vector_forms_transpose_reduce_and_axpy(lanes, chunks, pad):
    """vec_mat_t leaves row j's dot product in lane j; vec_mat is c = alpha c + p B;
    B read in place (rows `valid` long, no padding in memory), ragged widths too."""
    rng = np.random.default_rng(chunks)
    width = chunks * lanes
    valid = width - pad
    a = rng.standard_normal(width).astype(np.float32)
    a[valid:] = 0.0   # the row of A is padded with zeros, as decode's q rows are
    b = rng.standard_normal((lanes, valid)).astype(np.float32)
    p = rng.standard_normal(lanes).astype(np.float32)
    c0 = rng.standard_normal(width).astype(np.float32)
    c = dpnp.asarray(c0)
    scores = dpnp.zeros(lanes, dtype=np.float32)
    launch(_vec_kernel(chunks, lanes, valid), (lanes,), (lanes,), dpnp.asarray(a),
           dpnp.asarray(b.ravel()), dpnp.asarray(np.zeros(1, np.int32)), dpnp.asarray(p),
           c, scores)
    np.testing.assert_allclose(dpnp.asnumpy(scores), b.astype(np.float64) @ a[:valid],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dpnp.asnumpy(c)[:valid],
                               0.5 * c0[:valid] + p.astype(np.float64) @ b,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(33, 17, 45), (16, 8, 16), (32, 100, 20), (1, 3, 1)])
def test_gemm_out_is_written_in_place_and_nothing_around_it(shape):
    """out= gets exactly M x N values (ragged M and N included); the guard bytes around
    it, in the same allocation, keep their canary. M a multiple of 16 with dpnp float32
    A: A is read in place, unpacked."""
    m, k, n = shape
    rng = np.random.default_rng(k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    guard = 40
    buffer = dpnp.full(m * n + 2 * guard, -7.0, dtype=np.float32)
    out = buffer[guard:guard + m * n].reshape(m, n)
    got = matmul(dpnp.asarray(a), dpnp.asarray(b), out=out)
    assert got is out
    np.testing.assert_allclose(dpnp.asnumpy(out), a.astype(np.float64) @ b,
                               rtol=1e-5, atol=1e-5 * np.sqrt(k))
    host = dpnp.asnumpy(buffer)
    assert (host[:guard] == -7.0).all() and (host[guard + m * n:] == -7.0).all()
    with pytest.raises(ValueError, match=r"out: expected a C-contiguous dpnp float32"):
        matmul(a, b, out=np.empty((m, n), np.float32))
