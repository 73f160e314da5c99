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
    """``mma_ab(p, b_tile, c_tile, alpha, lane)``: this lane's row of C = alpha·C + P·B."""
    chains = min(PV_CHAINS, n)
    body = [f"def mma_ab(p, b_tile, c_tile, alpha, lane):",
            f"    lane = u64(lane)"]
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

    return {"numba": numba, "u64": uint64, "fma": fastmath.fma}


_NAMESPACE = _namespace()


@factory
def store_results(n: int):
    """``store_results(dst, start, pitch, s)``: ``dst[start + j * pitch] = s_j``, j < n
    (a lane writes the ``n`` results of :func:`mma_abt`; unrolled like them)."""
    body = ["def store_results(dst, start, pitch, s):"]
    body += [f"    dst[u64(start) + u64({j}) * u64(pitch)] = s[{j}]" for j in range(n)]
    return device_function("\n".join(body), "store_results", _NAMESPACE)
