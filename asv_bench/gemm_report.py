"""The xetile GEMM against numpy.matmul and dpnp.matmul, GFLOP/s, in one run.

    .venv/bin/python asv_bench/gemm_report.py [--sizes 512 1024 2048] [--dtypes float32 ...]

``xetile`` is ``xetile.gemm.matmul`` end to end on device arrays (packing included;
bfloat16 as ``uint16`` bits with ``dtype="bfloat16"``, since dpnp has no bfloat16);
``x:out`` the same into a preallocated ``out=`` (against ``numpy.matmul(out=)``: both
then skip the first-touch page faults of a fresh result); ``kernel`` is the GEMM kernel
alone on packed panels. numpy gets host float32 arrays (16-bit inputs are multiplied in
float32, as numpy cannot do better), dpnp device float32 arrays. Best of ``--repeat``
calls each.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import xetile  # noqa: E402,F401  (configures the SYCL runtime first)
import dpnp  # noqa: E402
import numpy as np  # noqa: E402

from xetile.gemm import BLOCK_M, LANES, gemm_kernel, matmul, pack_panels  # noqa: E402
from xetile.dtypes import host_bfloat16  # noqa: E402


SETTLE_SECONDS = 0.2


def best(call, repeat):
    """The best of ``repeat`` timed calls, after one untimed call and a pause: numpy's
    BLAS threads and the SYCL runtime's workers each spin for a while after their last
    job, and measured right after the other library every call ran up to 2x slower."""
    call()
    time.sleep(SETTLE_SECONDS)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float16", "bfloat16"])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    print(f"{'N':>5} {'dtype':>8} {'xetile':>8} {'x:out':>8} {'kernel':>8} {'numpy':>8} "
          f"{'np:out':>8} {'dpnp':>8}  {'xetile/numpy':>12} {'out/np:out':>10} "
          f"{'xetile/dpnp':>11}   (GFLOP/s)")
    for n in args.sizes:
        flop = 2.0 * n ** 3
        rng = np.random.default_rng(n)
        a32 = rng.standard_normal((n, n), dtype=np.float32)
        b32 = rng.standard_normal((n, n), dtype=np.float32)
        t_numpy = best(lambda: a32 @ b32, args.repeat)
        c_host = np.empty((n, n), np.float32)
        t_numpy_out = best(lambda: np.matmul(a32, b32, out=c_host), args.repeat)
        da, db = dpnp.asarray(a32), dpnp.asarray(b32)
        t_dpnp = best(lambda: (da @ db).sycl_queue.wait(), args.repeat)
        for name in args.dtypes:
            dtype = host_bfloat16() if name == "bfloat16" else np.dtype(name)
            a, b = a32.astype(dtype), b32.astype(dtype)
            bits = None
            if name == "bfloat16":  # dpnp has no bfloat16: its bits travel as uint16
                a, b, bits = a.view(np.uint16), b.view(np.uint16), name
            xa, xb = dpnp.asarray(a), dpnp.asarray(b)
            t_x = best(lambda: matmul(xa, xb, dtype=bits), args.repeat)
            c_out = dpnp.empty((n, n), dtype=np.float32)
            t_x_out = best(lambda: matmul(xa, xb, out=c_out, dtype=bits), args.repeat)
            ap = pack_panels(xa, BLOCK_M, True, dtype=bits)
            bp = pack_panels(xb, LANES, False, dtype=bits)
            c = dpnp.empty((n, n), dtype=np.float32)
            launch_args = ((ap.shape[0] * bp.shape[0] * LANES,), (LANES,), ap.reshape(-1),
                           bp.reshape(-1), c.reshape(-1), bp.shape[0], n, n, n, 1)
            t_k = best(lambda: xetile.launch(gemm_kernel(), *launch_args), args.repeat)
            print(f"{n:5d} {name:>8} {flop / t_x / 1e9:8.1f} {flop / t_x_out / 1e9:8.1f} "
                  f"{flop / t_k / 1e9:8.1f} {flop / t_numpy / 1e9:8.1f} "
                  f"{flop / t_numpy_out / 1e9:8.1f} {flop / t_dpnp / 1e9:8.1f}  "
                  f"{t_numpy / t_x:12.2f} {t_numpy_out / t_x_out:10.2f} "
                  f"{t_dpnp / t_x:11.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
