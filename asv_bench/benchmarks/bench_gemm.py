"""The xetile GEMM (``xetile.gemm.matmul``, dpnp in and out) against numpy and dpnp matmul.

Square float32 products; skipped (NotImplementedError) while ``xetile.gemm`` is missing.
"""
from __future__ import annotations

import numpy as np

from fmha import runner

try:
    from xetile.gemm import matmul as xetile_matmul
except ImportError:  # not written yet: the "xetile" rows are skipped
    xetile_matmul = None

from .common import best_seconds


class Gemm:
    """C = A @ B, N x N float32, inputs already where each implementation computes."""

    params = [["xetile", "numpy", "dpnp"], [512, 1024, 2048]]
    param_names = ["impl", "n"]
    timeout = 300
    number = 1
    repeat = (3, 10, 2.0)
    warmup_time = 0.0
    rounds = 1

    def setup(self, impl, n):
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        self.flops = 2 * n ** 3
        if impl == "numpy":
            self.fn, self.args = np.matmul, (a, b)
        else:
            import dpnp
            from xetile import runtime

            if impl == "xetile":
                if xetile_matmul is None:
                    raise NotImplementedError("xetile.gemm.matmul is not available")
                self.fn = xetile_matmul
            else:
                self.fn = dpnp.matmul
            device = runtime.device()
            self.args = (dpnp.asarray(a, device=device), dpnp.asarray(b, device=device))
        self.call()  # JIT compile (xetile) or first-use set-up (dpnp, oneMKL)

    def call(self):
        out = self.fn(*self.args)
        runner.synchronize(out)
        return out

    def time_matmul(self, impl, n):
        self.call()

    def track_gflops(self, impl, n):
        """GFLOP/s (2 N^3 per product) at the best of 3 calls."""
        return self.flops / best_seconds(self.call) / 1e9

    track_gflops.unit = "GFLOP/s"
