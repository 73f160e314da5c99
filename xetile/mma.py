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

    return {"numba": numba, "u64": uint64, "fma": fastmath.fma, "select": fastmath.select,
            "shuffle_xor": shuffle_xor}


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
# B is walked row by row, so each row's cache lines come in order. Measured in the
# previous session on the decode benchmark (B8 Hq32 Hkv8, 4096 keys, HND, launch only,
# back to back; the earlier forms are gone, so not re-measured since): in place, chunk
# by chunk across the 16 rows, 21.0 ms (fp16 13.9); row by row, 15.6 ms (fp16 12.8);
# staging B into local memory first had given 21.9 ms per call. Rows of B are
# re-read for each row of A, from L1.

@factory
def _row_forms(chunks: int, lanes: int, valid: int, dtype: str):
    """Two small generated functions over one row of B, this lane's ``chunks`` elements
    ``B[c] = b[row + c * lanes]`` (``row`` = the row's start + ``lane``), converted to
    float32 and 0 past ``valid`` (``lane + c * lanes >= valid``):

    * ``row_dot(xs, b, row, lane) -> sum_c xs[c] * B[c]``  (``xs`` a tuple of ``chunks``);
    * ``row_axpy(cs, p, b, row, lane) -> (cs[c] + p * B[c] for c)``.

    The vector forms call them once per row of B: unrolled in one function instead
    (16 rows x 16 chunks at D = 256), numba took up to 60 s to compile the decode kernel
    (seen in the previous session).
    LLVM inlines them, so the tuples stay in registers.
    """
    def element(c: int) -> str:
        x = f"b[row + u64({c * lanes})]"
        x = x if dtype == "float32" else f"load({x})"
        if (c + 1) * lanes <= valid:
            return x
        return f"({x} if lane + u64({c * lanes}) < u64({valid}) else numba.float32(0.0))"

    namespace = _vector_namespace(dtype)
    dot = ["def row_dot(xs, b, row, lane):", "    s = numba.float32(0.0)"]
    dot += [f"    s = fma(xs[{c}], {element(c)}, s)" for c in range(chunks)]
    dot += ["    return s"]
    axpy = ["def row_axpy(cs, p, b, row, lane):"]
    axpy += [f"    c{c} = fma(p, {element(c)}, cs[{c}])" for c in range(chunks)]
    axpy += [f"    return ({names('c', chunks)},)"]
    return (device_function("\n".join(dot), "row_dot", namespace),
            device_function("\n".join(axpy), "row_axpy", namespace))


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
    row_dot, _ = _row_forms(chunks, lanes, valid or chunks * lanes, dtype)
    # B row by row (each row's cache lines in order), this lane's slice of a in registers
    body = ["def vec_mat_t(a, a_start, b, b_rows, lane):",
            "    lane = u64(lane)",
            "    a_at = u64(a_start) + lane",
            "    xs = (" + ", ".join(f"a[a_at + u64({c * lanes})]" for c in range(chunks))
            + ",)"]
    body += [f"    p{j} = row_dot(xs, b, b_rows[{j}] + lane, lane)" for j in range(n)]
    # transpose-reduce: at offset h, pair (p_j, p_{j+h}); lanes with bit h keep p_{j+h}
    names_now = [f"p{j}" for j in range(n)]
    h = n // 2
    while h >= 1:
        body.append(f"    upper = (lane & u64({h})) != u64(0)")
        merged = []
        for j in range(h):
            lo, hi = names_now[j], names_now[j + h]
            out = f"r{h}_{j}"
            body.append(f"    {out} = select(upper, {hi}, {lo}) + "
                        f"shuffle_xor(select(upper, {lo}, {hi}), {h})")
            merged.append(out)
        names_now = merged
        h //= 2
    body.append(f"    return {names_now[0]}")
    return device_function("\n".join(body), "vec_mat_t",
                           {**_vector_namespace(dtype), "row_dot": row_dot})


@factory
def vec_mat(n: int, chunks: int, lanes: int, dtype: str = "float32", valid: int = 0):
    """``vec_mat(p, p_start, b, b_rows, c, c_start, alpha, lane)``: the row
    ``C = alpha * C + P · B`` with lanes splitting its length.

    ``P`` is ``n`` float32 values at ``p[p_start:]`` (read by every lane); ``B`` is ``n``
    rows of ``valid`` elements of ``dtype`` at ``b[b_rows[j]]`` (as in :func:`vec_mat_t`);
    ``C`` one float32 row of length ``chunks * lanes`` at ``c_start`` (its padding past
    ``valid`` stays finite and is never meant to be read).
    """
    _, row_axpy = _row_forms(chunks, lanes, valid or chunks * lanes, dtype)
    # B row by row (as in vec_mat_t): this lane's slice of C in registers
    body = ["def vec_mat(p, p_start, b, b_rows, c, c_start, alpha, lane):",
            "    lane = u64(lane)",
            "    c_at = u64(c_start) + lane",
            "    p_at = u64(p_start)",
            "    cs = (" + ", ".join(f"c[c_at + u64({k * lanes})] * alpha"
                                     for k in range(chunks)) + ",)"]
    body += [f"    cs = row_axpy(cs, p[p_at + u64({j})], b, b_rows[{j}] + lane, lane)"
             for j in range(n)]
    body += [f"    c[c_at + u64({k * lanes})] = cs[{k}]" for k in range(chunks)]
    return device_function("\n".join(body), "vec_mat",
                           {**_vector_namespace(dtype), "row_axpy": row_axpy})


def _vector_namespace(dtype: str) -> dict:
    from xetile.dtypes import storage

    return {**_NAMESPACE, "load": storage(dtype).load}
