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

Two forms, both accumulating in float32, for ``tiles`` row tiles at once (lane ``i``
owns row ``i`` of each):

* :func:`mma_abt` ``S_t[i, j] = sum_k A_t[i, k] * B[j, k]``  (Q Kᵀ: A = Q, B = K; and
  the GEMM of :mod:`xetile.gemm`), results in registers, returned as tuples.
* :func:`mma_ab` ``C_t[i, k] = alpha_ti * C_t[i, k] + sum_j P_t[i, j] * B[j, k]``  (P V),
  ``P_t`` register tuples, ``C_t`` lane tiles (too large for registers: 128 floats per
  lane were measured 4x slower when kept in a private array).

Each value of B loaded (a broadcast) is used by several row tiles: on a CPU that does
two 512-bit FMAs and two 512-bit loads a cycle (Intel Xeon, Sapphire/Emerald Rapids),
one FMA per broadcast load leaves the loop bound by loads, as a BLAS micro-kernel would
be with a single row of registers. Both forms keep 16 sums in registers per pass: for
S, a pass takes ``16 // tiles`` rows of B over the whole depth for up to two row tiles
(``ABT_TILES_PER_PASS``: four take two passes, which reads less of A); for C, a pass
takes ``16 // tiles`` columns of each lane tile of C over all the keys of the tile (each
key: that many broadcast values of B and one weight per row tile). A
row's arithmetic is the same whatever ``tiles`` is: every sum, over ``k`` for S and over
the keys for C, is one chain in order, so a row gets the same bits whether its
work-group holds one row tile or four.

Shapes (``lanes`` = M rows per tile, ``N`` columns of S, ``K`` = depth):
A lane tiles ``[tiles, K, M]``, B row tile ``[N, K]``, C lane tiles ``[tiles, K, M]``.

And two *vector* forms for a work-group with only a few rows (decode), where the lanes
split the depth instead and B is read in place from global memory (any storage dtype):
:func:`vec_mat_t` (``s = a Bᵀ``, with a butterfly transpose-reduce) and :func:`vec_mat`
(``c = alpha c + p B``).
"""
from __future__ import annotations

from numba import types, uint64
from numba.extending import intrinsic
from numba_dpex.kernel_api_impl.spirv.target import SPIRV_TARGET_NAME

from xetile._codegen import Arg, Emitter, device_function
from xetile.dtypes import storage
from xetile.kernel import factory

# Sums one pass of mma_abt keeps in registers (of 32 vector registers; the rest hold the
# A values and a broadcast B value), over at most ABT_TILES_PER_PASS row tiles: 16 keys
# for one row tile, 8 for two or four (four take two passes of two). Each pass reads
# its row tiles of A over the whole depth, from L2 when A does not fit L1 beside the
# rest (four Q tiles and four output tiles: 64 KiB at D 128), so fewer row tiles a pass
# read less of A and more of B, which is hot in L1. Measured with four row tiles
# (Intel Xeon with AMX, session 8, best of 8, alternated fresh processes): non-causal
# seed shape fp32 129.8-131.2 ms with two row tiles a pass against 131.8-134.3 with all
# four (four rounds; one tile a pass: 135.3-137.0), the seed shape 130.1-132.3 against
# 132.3-134.0, bf16 HND 109.6-110.5 against 113.6-116.0 (three rounds).
ABT_SUMS = 16
ABT_TILES_PER_PASS = 2
# Output sums one pass of mma_ab keeps in registers: P V walks the depth in chunks of
# AB_SUMS // tiles columns, and for each key of the tile loads that many broadcast V
# values and one weight per row tile, then does AB_SUMS FMAs (2 loads per 4 FMAs, as in
# mma_abt). Each sum C_t[i, k] is one chain over the keys in order, whatever the chunk,
# so a row's bits do not depend on the number of row tiles. The form before (the tile's
# 16 keys in one pass over the depth, each weight read from the stack by its FMA: 5
# loads per 4 FMAs, load-bound) measured on the seed shape without causal masking
# (Intel Xeon with AMX, 2 cores, session 7, alternated fresh processes, best of 10):
# 150-159 ms before, 138-154 after.
# A pass covers at most AB_TILES_PER_PASS row tiles: eight row tiles (float32 prefill)
# take two passes over B of four tiles x 4 columns each (2 loads per 4 FMAs) rather than
# one of eight tiles x 2 columns (5 loads per 8 FMAs); B is re-read from L1. Measured
# (session 8, same machine, best of 8, alternated fresh processes, six rounds):
# non-causal seed shape fp32 117.9-120.7 ms against 123.2-133.1; seed shape
# 120.7-121.3 against 125.4-126.1 in the three quieter rounds (121.1-140.1 against
# 125.5-145.4 in the noisy three).
AB_SUMS = 16
AB_TILES_PER_PASS = 4


@factory
def mma_abt(n: int, lanes: int, tiles: int = 1):
    """``mma_abt(a, a_start, a_tile_pitch, a_pitch, b, b_start, b_row_pitch, b_pitch,
    depth, lane)``.

    Returns ``tiles`` tuples of this lane's ``n`` results
    ``s[t][j] = sum_k A_t[k, lane] * B[j, k]``, where
    ``A_t[k, lane] = a[a_start + t * a_tile_pitch + k * a_pitch + lane]`` (contiguous
    across lanes) and ``B[j, k] = b[b_start + j * b_row_pitch + k * b_pitch]`` (the same
    for every lane). For Q Kᵀ, ``a`` holds the Q lane tiles and ``b`` is the K row tile;
    for a GEMM, ``a`` is B's columns and ``b`` is A's rows (or Aᵀ with ``b_pitch`` its
    row length).

    A pass keeps ``ABT_SUMS`` sums in registers (``per_pass`` rows of B for each of at
    most ``ABT_TILES_PER_PASS`` row tiles) and walks the whole depth; in Python it would
    read::

        for k in range(depth):
            x_t = a[a_at + t * a_tile_pitch]          # for each row tile t
            b_j = b[b_at + j * b_row_pitch]           # for each row j of the pass
            s_t_j = fma(x_t, b_j, s_t_j)              #   and each t
            a_at += a_pitch; b_at += b_pitch

    It is written as LLVM IR (:class:`xetile._codegen.Emitter`): as a generated numba
    function it took 0.42 s to compile at four row tiles, on each first call.
    """
    tiles_per_pass = min(tiles, ABT_TILES_PER_PASS)
    per_pass = max(1, min(n, ABT_SUMS // tiles_per_pass))
    result = types.UniTuple(types.UniTuple(types.float32, n), tiles)
    A, A_START, A_TILE_PITCH, A_PITCH, B, B_START, B_ROW_PITCH, B_PITCH, DEPTH, LANE = (
        map(Arg, range(10)))

    def codegen(context, builder, sig, args):
        e = Emitter(context, builder, sig, args)
        a_pitch, b_pitch = e.u64(A_PITCH), e.u64(B_PITCH)
        a_first = e.add(e.u64(A_START), e.u64(LANE))
        a_offset = [e.mul(e.u64(t), e.u64(A_TILE_PITCH)) for t in range(tiles)]
        b_offset = [e.mul(e.u64(j), e.u64(B_ROW_PITCH)) for j in range(n)]
        sums = {}
        passes = [(range(t0, min(tiles, t0 + tiles_per_pass)),
                   range(first, min(n, first + per_pass)))
                  for t0 in range(0, tiles, tiles_per_pass) for first in range(0, n, per_pass)]
        for row_tiles, keys in passes:
            cells = {(t, j): e.var(e.f32(0.0)) for t in row_tiles for j in keys}
            a_at, b_at = e.var(a_first), e.var(e.u64(B_START))
            with e.loop(e.u64(DEPTH)):
                xs = {t: e.load(A, e.add(e.get(a_at), a_offset[t])) for t in row_tiles}
                for j in keys:
                    b_j = e.load(B, e.add(e.get(b_at), b_offset[j]))
                    for t in row_tiles:
                        e.set(cells[t, j], e.fma(xs[t], b_j, e.get(cells[t, j])))
                e.set(a_at, e.add(e.get(a_at), a_pitch))
                e.set(b_at, e.add(e.get(b_at), b_pitch))
            sums.update({key: e.get(cell) for key, cell in cells.items()})
        return e.float_tuples([[sums[t, j] for j in range(n)] for t in range(tiles)])

    @intrinsic(target=SPIRV_TARGET_NAME)
    def mma_abt(typingctx, a, a_start, a_tile_pitch, a_pitch, b, b_start, b_row_pitch,
                b_pitch, depth, lane):
        return result(a, a_start, a_tile_pitch, a_pitch, b, b_start, b_row_pitch,
                      b_pitch, depth, lane), codegen
    return mma_abt


@factory
def mma_ab(n: int, depth: int, lanes: int, tiles: int = 1):
    """``mma_ab(ps, b_tile, c_tile, c_start, c_tile_pitch, alphas, lane)``: this lane's
    row of ``C_t = alphas[t] * C_t + P_t B`` for each of ``tiles`` lane tiles
    (``C_t`` at ``c_start + t * c_tile_pitch``, ``P_t = ps[t]``, a tuple of ``n``).
    ``B`` is a row tile ``[n, depth]``.

    The row tiles are taken ``AB_TILES_PER_PASS`` at a time (a pass over B each); a
    pass walks the depth in chunks of ``columns`` (``AB_SUMS`` // the tiles of the pass)
    columns of each lane tile, their sums in registers; in Python a pass would read::

        for k in range(0, depth, columns):
            c_t_c = alphas[t] * C_t[k + c, lane]          # each tile t, column c
            for j in range(n):                            # the keys, in order
                b_c = b_tile[j * depth + k + c]           # each column c
                c_t_c = fma(ps[t][j], b_c, c_t_c)         #   and each tile t
            C_t[k + c, lane] = c_t_c

    Written as LLVM IR, as :func:`mma_abt` is (0.30 s to compile as a generated numba
    function).
    """
    tiles_per_pass = min(tiles, AB_TILES_PER_PASS)
    columns = max(1, AB_SUMS // tiles_per_pass)
    while depth % columns:
        columns //= 2
    groups = [range(t0, min(tiles, t0 + tiles_per_pass))
              for t0 in range(0, tiles, tiles_per_pass)]
    PS, B_TILE, C_TILE, C_START, C_TILE_PITCH, ALPHAS, LANE = map(Arg, range(7))

    def codegen(context, builder, sig, args):
        e = Emitter(context, builder, sig, args)
        lane = e.add(e.u64(C_START), e.u64(LANE))
        alphas = [e.f32(ALPHAS, t) for t in range(tiles)]
        c_offset = [e.mul(e.u64(t), e.u64(C_TILE_PITCH)) for t in range(tiles)]
        weights = [[e.f32(PS, t, j) for j in range(n)] for t in range(tiles)]
        for group in groups:  # a pass over B for each group of row tiles
            sums = [(t, c) for t in group for c in range(columns)]
            with e.loop(e.u64(depth // columns)) as step:
                k = e.mul(step, e.u64(columns))
                at = e.add(e.mul(k, e.u64(lanes)), lane)
                c_at = {(t, c): e.add(e.add(at, c_offset[t]), e.u64(c * lanes))
                        for t, c in sums}
                cs = {(t, c): e.fmul(e.load(C_TILE, c_at[t, c]), alphas[t])
                      for t, c in sums}
                for j in range(n):
                    key = e.add(e.u64(j * depth), k)
                    bs = [e.load(B_TILE, e.add(key, e.u64(c))) for c in range(columns)]
                    for c in range(columns):
                        for t in group:
                            cs[t, c] = e.fma(weights[t][j], bs[c], cs[t, c])
                for t, c in sums:
                    e.store(C_TILE, c_at[t, c], cs[t, c])
        return context.get_dummy_value()

    @intrinsic(target=SPIRV_TARGET_NAME)
    def mma_ab(typingctx, ps, b_tile, c_tile, c_start, c_tile_pitch, alphas, lane):
        return types.none(ps, b_tile, c_tile, c_start, c_tile_pitch, alphas, lane), codegen
    return mma_ab


_NAMESPACE = {"u64": uint64}  # of store_results, the one generated function left here


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

def _row_element(e: Emitter, b: Arg, row, lane, c: int, lanes: int, valid: int, convert):
    """IR: this lane's element ``c`` of a row of B, ``b[row + c * lanes]`` (``row`` = the
    row's start + ``lane``) as float32, or 0 past ``valid`` (``lane + c * lanes >= valid``,
    where nothing is read)."""
    at = e.add(row, e.u64(c * lanes))
    if (c + 1) * lanes <= valid:
        return e.load(b, at, convert)
    return e.load_if(e.ult(e.add(lane, e.u64(c * lanes)), e.u64(valid)), b, at, convert)


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
    In Python it would read::

        x_c = a[a_start + lane + c * lanes]                    # this lane's slice of a
        p_j = sum_c fma(x_c, B[j][lane + c * lanes], ...)      # row by row, c in order
        for h in (n/2, ..., 2, 1):   # pair (p_j, p_j+h); lanes with bit h keep p_j+h
            upper = lane & h != 0
            p_j = select(upper, p_j+h, p_j) + shuffle_xor(select(upper, p_j, p_j+h), h)
        return p_0

    Written as LLVM IR (:class:`xetile._codegen.Emitter`), as :func:`mma_abt` is.
    """
    if n != lanes or lanes & (lanes - 1):
        raise ValueError(f"vec_mat_t: need n == lanes, a power of two; got {n}, {lanes}")
    valid = valid or chunks * lanes
    convert = storage(dtype).load_ir
    A, A_START, B, B_ROWS, LANE = map(Arg, range(5))

    def codegen(context, builder, sig, args):
        e = Emitter(context, builder, sig, args)
        lane = e.u64(LANE)
        a_at = e.add(e.u64(A_START), lane)
        xs = [e.load(A, e.add(a_at, e.u64(c * lanes))) for c in range(chunks)]
        # B row by row (each row's cache lines in order), this lane's slice of a in registers
        partial = []
        for j in range(n):
            row = e.add(e.u64(B_ROWS, j), lane)
            s = e.f32(0.0)
            for c in range(chunks):
                s = e.fma(xs[c], _row_element(e, B, row, lane, c, lanes, valid, convert), s)
            partial.append(s)
        h = n // 2
        while h >= 1:  # the transpose-reduce
            upper = e.ne(e.and_(lane, e.u64(h)), e.u64(0))
            partial = [e.fadd(e.select(upper, partial[j + h], partial[j]),
                              e.shuffle_xor(e.select(upper, partial[j], partial[j + h]), h))
                       for j in range(h)]
            h //= 2
        return partial[0]

    @intrinsic(target=SPIRV_TARGET_NAME)
    def vec_mat_t(typingctx, a, a_start, b, b_rows, lane):
        return types.float32(a, a_start, b, b_rows, lane), codegen
    return vec_mat_t


@factory
def vec_mat(n: int, chunks: int, lanes: int, dtype: str = "float32", valid: int = 0):
    """``vec_mat(p, p_start, b, b_rows, c, c_start, alpha, lane)``: the row
    ``C = alpha * C + P · B`` with lanes splitting its length.

    ``P`` is ``n`` float32 values at ``p[p_start:]`` (read by every lane); ``B`` is ``n``
    rows of ``valid`` elements of ``dtype`` at ``b[b_rows[j]]`` (as in :func:`vec_mat_t`);
    ``C`` one float32 row of length ``chunks * lanes`` at ``c_start`` (its padding past
    ``valid`` stays finite and is never meant to be read). In Python it would read::

        c_k = alpha * c[c_start + lane + k * lanes]            # this lane's slice of C
        for j in range(n):                                     # B row by row
            c_k = fma(p[p_start + j], B[j][lane + k * lanes], c_k)
        c[c_start + lane + k * lanes] = c_k
    """
    valid = valid or chunks * lanes
    convert = storage(dtype).load_ir
    P, P_START, B, B_ROWS, C, C_START, ALPHA, LANE = map(Arg, range(8))

    def codegen(context, builder, sig, args):
        e = Emitter(context, builder, sig, args)
        lane = e.u64(LANE)
        c_at = [e.add(e.add(e.u64(C_START), lane), e.u64(k * lanes)) for k in range(chunks)]
        alpha = e.f32(ALPHA)
        cs = [e.fmul(e.load(C, at), alpha) for at in c_at]
        for j in range(n):
            p_j = e.load(P, e.add(e.u64(P_START), e.u64(j)))
            row = e.add(e.u64(B_ROWS, j), lane)
            cs = [e.fma(p_j, _row_element(e, B, row, lane, k, lanes, valid, convert), cs[k])
                  for k in range(chunks)]
        for at, value in zip(c_at, cs):
            e.store(C, at, value)
        return context.get_dummy_value()

    @intrinsic(target=SPIRV_TARGET_NAME)
    def vec_mat(typingctx, p, p_start, b, b_rows, c, c_start, alpha, lane):
        return types.none(p, p_start, b, b_rows, c, c_start, alpha, lane), codegen
    return vec_mat
