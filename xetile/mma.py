"""The sub-group matrix multiply, emulated (this device has no matrix unit).

Intel's Xe GPUs multiply tiles in a systolic unit (DPAS, SYCL ``joint_matrix``); the
OpenCL CPU runtime has none (a joint_matrix module is refused: "AMX matrix primitives
are being used on an arch older than Sapphire Rapids"). So the multiply is written as
fused multiply-adds in the form that measured fastest on the CPU (see ``docs/design.md``):
**one row per lane**. A sub-group of ``lanes`` work-items is one SIMD register; lane
``i`` owns row ``i`` of A and of the result, and for each k it reads its own ``A[i, k]``
(one contiguous vector load across lanes, from a lane tile) and the ``N`` values
``B[j, k]`` that every lane shares (broadcast loads, one cache line per row of B).
Local memory is read, never written, inside the k loop, and no barrier is needed.

Two forms, both accumulating in float32:

* :func:`mma_abt` ``S[i, j] = sum_k A[i, k] * B[j, k]``  (Q Kᵀ: A = Q, B = K; and the
  GEMM of :mod:`xetile.gemm`), result in ``N`` registers per lane, returned as a tuple.
* :func:`mma_ab` ``C[i, k] = alpha_i * C[i, k] + sum_j P[i, j] * B[j, k]``  (P V),
  ``P`` a register tuple, ``C`` a lane tile (too large for registers: 128 floats per
  lane were measured 4x slower when kept in a private array).

Shapes (``lanes`` = M rows, ``N`` columns of S, ``K`` = depth):
A lane tile ``[K, M]``, B row tile ``[N, K]``, C lane tile ``[K, M]``.

And two *vector* forms for a work-group with only a few rows (decode), where the lanes
split the depth instead and B is read in place from global memory (any storage dtype):
:func:`vec_mat_t` (``s = a Bᵀ``, with a butterfly transpose-reduce) and :func:`vec_mat`
(``c = alpha c + p B``).
"""
from __future__ import annotations

from xetile import fastmath
from xetile._codegen import device_function, names
from xetile.kernel import factory

# P V keeps this many independent accumulator chains per k: one chain would wait on
# the latency of every add (measured ~55 GFLOP/s); four reach full speed, eight spill.
PV_CHAINS = 4


@factory
def mma_abt(n: int, lanes: int):
    """``mma_abt(a, a_start, a_pitch, b, b_start, b_row_pitch, b_pitch, depth, lane)``.

    Returns this lane's ``n`` results ``s_j = sum_k A[k, lane] * B[j, k]``, where
    ``A[k, lane] = a[a_start + k * a_pitch + lane]`` (contiguous across lanes) and
    ``B[j, k] = b[b_start + j * b_row_pitch + k * b_pitch]`` (the same for every lane).
    For Q Kᵀ, ``a`` is the Q lane tile and ``b`` the K row tile; for a GEMM, ``a`` is B's
    columns and ``b`` is A's rows (or Aᵀ with ``b_pitch`` its row length).
    """
    body = ["def mma_abt(a, a_start, a_pitch, b, b_start, b_row_pitch, b_pitch, depth, lane):",
            "    a_at = u64(a_start) + u64(lane)",
            "    b_at = u64(b_start)"]
    body += [f"    s{j} = numba.float32(0.0)" for j in range(n)]
    body += ["    for k in range(depth):",
             "        x = a[a_at]"]
    body += [f"        s{j} = fma(x, b[b_at + u64({j}) * u64(b_row_pitch)], s{j})"
             for j in range(n)]
    body += ["        a_at += u64(a_pitch)",
             "        b_at += u64(b_pitch)",
             f"    return ({names('s', n)},)"]
    return device_function("\n".join(body), "mma_abt", _NAMESPACE)


@factory
def mma_ab(n: int, depth: int, lanes: int):
    """``mma_ab(p, b_tile, c_tile, c_start, alpha, lane)``: this lane's row of
    C = alpha·C + P·B, C the lane tile at ``c_start``."""
    chains = min(PV_CHAINS, n)
    body = [f"def mma_ab(p, b_tile, c_tile, c_start, alpha, lane):",
            f"    lane = u64(c_start) + u64(lane)"]
    body += [f"    p{j} = p[{j}]" for j in range(n)]
    body += [f"    for k in range({depth}):",
             f"        at = u64(k) * u64({lanes}) + lane",
             f"        c0 = c_tile[at] * alpha"]
    body += [f"        c{c} = numba.float32(0.0)" for c in range(1, chains)]
    body += [f"        c{j % chains} = fma(p{j}, b_tile[u64({j * depth}) + u64(k)], "
             f"c{j % chains})" for j in range(n)]
    body += [f"        c_tile[at] = {' + '.join(f'c{c}' for c in range(chains))}"]
    return device_function("\n".join(body), "mma_ab", _NAMESPACE)


def _namespace():
    import numba
    from numba import uint64

    from xetile.subgroup import shuffle_xor

    return {"numba": numba, "u64": uint64, "fma": fastmath.fma, "shuffle_xor": shuffle_xor}


_NAMESPACE = _namespace()


@factory
def store_results(n: int):
    """``store_results(dst, start, pitch, s, rows)``: ``dst[start + j * pitch] = s_j``
    for ``j < min(n, rows)`` (a lane writes the ``n`` results of :func:`mma_abt`,
    unrolled like them; ``rows`` is uniform, so the guards cost no divergence)."""
    body = ["def store_results(dst, start, pitch, s, rows):"]
    for j in range(n):
        body += [f"    if {j} < rows:",
                 f"        dst[u64(start) + u64({j}) * u64(pitch)] = s[{j}]"]
    return device_function("\n".join(body), "store_results", _NAMESPACE)


# -- the vector forms (one row per work-group, lanes split the depth) ----------------------
#
# B is read where it lies in global memory: row j of B starts at ``b[b_rows[j]]`` (a tuple
# of sub-group-uniform element offsets, e.g. from :func:`xetile.page_table.row_starts`),
# and each lane reads its slice of the depth, so every load is contiguous across lanes.
# B is walked row by row, so each row's cache lines come in order. Measured on the decode
# benchmark (B8 Hq32 Hkv8, 4096 keys, HND, one call): staging B into local memory first,
# 21.9 ms (fp16 18.1); in place, row by row, 15.8 ms (fp16 13.0). Rows of B are re-read
# for each row of A, from L1.

def _b_load(width: int, valid: int, lanes: int):
    """Source of the expression loading this lane's element of chunk ``c`` of row ``j``
    of B: converted from storage to float32, 0 in the padding past ``valid``."""
    def expr(j: int, c: int) -> str:
        x = f"load(b[b_rows[{j}] + u64({c * lanes}) + lane])"
        return x if valid == width else f"({x} if inside{c} else numba.float32(0.0))"
    return expr


@factory
def vec_mat_t(n: int, chunks: int, lanes: int, dtype: str = "float32", valid: int = 0):
    """``vec_mat_t(a, a_start, b, b_rows, lane) -> s``: lane ``j`` gets ``a · B[j]``.

    For a work-group with only a few rows (decode), one row per lane would leave most
    lanes idle; here the lanes split the depth instead. ``a`` is one float32 row of
    length ``chunks * lanes`` at ``a_start`` (zero past ``valid``); ``B`` is ``n == lanes``
    rows of ``valid`` elements of ``dtype`` (``valid=0``: all ``chunks * lanes``), row
    ``j`` at ``b[b_rows[j]]``. Each lane accumulates the partial products of its depth
    slice for all ``n`` rows of B (``n`` registers), then a butterfly *transpose-reduce*
    (four shuffle-xor steps for 16 lanes) leaves row ``j``'s full dot product in lane
    ``j``: the result is a vector over B's rows, one per lane, with no sub-group reduction.
    """
    if n != lanes or lanes & (lanes - 1):
        raise ValueError(f"vec_mat_t: need n == lanes, a power of two; got {n}, {lanes}")
    width = chunks * lanes
    b_elem = _b_load(width, valid or width, lanes)
    # B row by row (each row's cache lines in order, which the hardware prefetcher
    # follows), the slice of ``a`` in registers
    body = ["def vec_mat_t(a, a_start, b, b_rows, lane):",
            "    lane = u64(lane)",
            "    a_at = u64(a_start) + lane"]
    body += [f"    x{c} = a[a_at + u64({c * lanes})]" for c in range(chunks)]
    body += [f"    inside{c} = u64({c * lanes}) + lane < u64({valid or width})"
             for c in range(chunks)]
    for j in range(n):
        body.append(f"    p{j} = numba.float32(0.0)")
        body += [f"    p{j} = fma(x{c}, {b_elem(j, c)}, p{j})" for c in range(chunks)]
    # transpose-reduce: at offset h, pair (p_j, p_{j+h}); lanes with bit h keep p_{j+h}
    names_now = [f"p{j}" for j in range(n)]
    h = n // 2
    while h >= 1:
        body.append(f"    upper = (lane & u64({h})) != u64(0)")
        merged = []
        for j in range(h):
            lo, hi = names_now[j], names_now[j + h]
            out = f"r{h}_{j}"
            body.append(f"    {out} = ({hi} if upper else {lo}) + "
                        f"shuffle_xor({lo} if upper else {hi}, {h})")
            merged.append(out)
        names_now = merged
        h //= 2
    body.append(f"    return {names_now[0]}")
    return device_function("\n".join(body), "vec_mat_t", _vector_namespace(dtype))


@factory
def vec_mat(n: int, chunks: int, lanes: int, dtype: str = "float32", valid: int = 0):
    """``vec_mat(p, p_start, b, b_rows, c, c_start, alpha, lane)``: the row
    ``C = alpha * C + P · B`` with lanes splitting its length.

    ``P`` is ``n`` float32 values at ``p[p_start:]`` (read by every lane); ``B`` is ``n``
    rows of ``valid`` elements of ``dtype`` at ``b[b_rows[j]]`` (as in :func:`vec_mat_t`);
    ``C`` one float32 row of length ``chunks * lanes`` at ``c_start`` (its padding past
    ``valid`` stays finite and is never meant to be read).
    """
    width = chunks * lanes
    b_elem = _b_load(width, valid or width, lanes)
    # B row by row (as in vec_mat_t): the row of C in ``chunks`` registers
    body = ["def vec_mat(p, p_start, b, b_rows, c, c_start, alpha, lane):",
            "    lane = u64(lane)",
            "    c_at = u64(c_start) + lane"]
    body += [f"    c{k} = c[c_at + u64({k * lanes})] * alpha" for k in range(chunks)]
    body += [f"    inside{k} = u64({k * lanes}) + lane < u64({valid or width})"
             for k in range(chunks)]
    for j in range(n):
        body.append(f"    pj = p[u64(p_start) + u64({j})]")
        body += [f"    c{k} = fma(pj, {b_elem(j, k)}, c{k})" for k in range(chunks)]
    body += [f"    c[c_at + u64({k * lanes})] = c{k}" for k in range(chunks)]
    return device_function("\n".join(body), "vec_mat", _vector_namespace(dtype))


def _vector_namespace(dtype: str) -> dict:
    from xetile.dtypes import storage

    return {**_NAMESPACE, "load": storage(dtype).load}
