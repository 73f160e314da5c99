"""Baselines on the shapes of ``Prefill`` (D128 fp32) and ``Decode`` (contiguous cache).

* numpy: plain attention (matmul, softmax, matmul) in float32 on the host;
* dpnp: the same three steps with dpnp on the SYCL device (oneMKL matmul);
* torch: ``scaled_dot_product_attention`` on the CPU, run by ``asv_bench/torch_baseline.py``
  in its own process (torch's thread pool and the SYCL runtime's would fight over the
  2 cores), reported through ``track_`` methods in milliseconds and TFLOP/s or GB/s.

The work counted for TFLOP/s and GB/s is the same as for fmha (causal: visible pairs
only), so the tracks compare directly.
"""
from __future__ import annotations

import math

import numpy as np

from fmha import runner
from fmha.runner import RunConfig

from .common import best_seconds, run_torch_baseline


def prefill_config(causal: bool) -> RunConfig:
    return RunConfig(batch=1, num_heads_q=16, num_heads_kv=16, seq_len_qo=512,
                     seq_len_kv=512, is_causal=causal, head_dim=128, dtype="float32")


# The Decode family's shape with the cache contiguous (page order cannot matter here).
DECODE = RunConfig(batch=4, num_heads_q=32, num_heads_kv=8, seq_len_qo=1, seq_len_kv=1,
                   seq_len_kv_cache=4096, is_causal=True, head_dim=128, dtype="float32")


def grouped_inputs(problem: runner.Problem):
    """q ``[B, Hkv, G*Sq, D]``, k and v ``[B, Hkv, L, D]`` (float32), and the causal bias
    ``[Sq, L]`` (0 where visible, -inf elsewhere; None if not causal).

    The G query heads that share a kv head are stacked, so each product is one batched
    matmul without repeating K and V (non-varlen problems only: equal lengths).
    """
    c = problem.config
    group = c.num_heads_q // c.num_heads_kv
    q = np.stack([d[0] for d in problem.dense]).astype(np.float32)
    k = np.stack([d[1] for d in problem.dense]).astype(np.float32)
    v = np.stack([d[2] for d in problem.dense]).astype(np.float32)
    b, sq, _, d = q.shape
    n = k.shape[1]
    q = q.reshape(b, sq, c.num_heads_kv, group, d).transpose(0, 2, 3, 1, 4)
    q = np.ascontiguousarray(q.reshape(b, c.num_heads_kv, group * sq, d))
    k = np.ascontiguousarray(k.transpose(0, 2, 1, 3))
    v = np.ascontiguousarray(v.transpose(0, 2, 1, 3))
    bias = None
    if c.is_causal:
        visible = np.arange(n)[None, :] <= np.arange(sq)[:, None] + (n - sq)
        bias = np.where(visible, 0.0, -np.inf).astype(np.float32)
    return q, k, v, bias


def plain_attention(xp, q, k, v, bias, scale):
    """softmax(q k^T * scale + bias) v with array module ``xp`` (numpy or dpnp)."""
    s = xp.matmul(q, xp.swapaxes(k, -1, -2)) * scale
    if bias is not None:
        b, h, rows, n = s.shape
        sq = bias.shape[0]
        s = (s.reshape(b, h, rows // sq, sq, n) + bias).reshape(b, h, rows, n)
    p = xp.exp(s - xp.max(s, axis=-1, keepdims=True))
    return xp.matmul(p, v) / xp.sum(p, axis=-1, keepdims=True)


class _Baseline:
    timeout = 300
    number = 1
    repeat = (3, 10, 2.0)
    warmup_time = 0.0
    rounds = 1
    xp_name = "numpy"

    def make(self, config: RunConfig):
        problem = runner.build_problem(config)
        arrays = grouped_inputs(problem)
        if self.xp_name == "dpnp":
            import dpnp
            from xetile import runtime

            self.xp = dpnp
            device = runtime.device()
            arrays = tuple(None if a is None else dpnp.asarray(a, device=device)
                           for a in arrays)
        else:
            self.xp = np
        self.arrays = arrays
        self.scale = 1.0 / math.sqrt(config.head_dim)
        self.flops = runner.flop_count(problem)
        self.kv_bytes = runner.kv_bytes(problem)
        self.call()  # dpnp compiles its kernels on first use

    def call(self):
        out = plain_attention(self.xp, *self.arrays, self.scale)
        runner.synchronize(out)
        return out

    def time_attention(self, *params):
        self.call()

    def peakmem_attention(self, *params):
        self.call()


class _PrefillBaseline(_Baseline):
    params = [[False, True]]
    param_names = ["causal"]

    def setup(self, causal):
        self.make(prefill_config(causal))

    def track_tflops(self, causal):
        return self.flops / best_seconds(self.call) / 1e12

    track_tflops.unit = "TFLOP/s"


class _DecodeBaseline(_Baseline):
    def setup(self):
        self.make(DECODE)

    def track_gbps(self):
        return self.kv_bytes / best_seconds(self.call) / 1e9

    track_gbps.unit = "GB/s"


class NumpyPrefill(_PrefillBaseline):
    """Plain numpy float32 attention on the Prefill D128 shape."""


class NumpyDecode(_DecodeBaseline):
    """Plain numpy float32 attention on the Decode shape (contiguous cache)."""


class DpnpPrefill(_PrefillBaseline):
    """matmul-softmax-matmul with dpnp on the SYCL device, Prefill D128 shape."""

    xp_name = "dpnp"


class DpnpDecode(_DecodeBaseline):
    """matmul-softmax-matmul with dpnp on the SYCL device, Decode shape."""

    xp_name = "dpnp"


def torch_args(config: RunConfig, iterations: int = 10):
    """torch_baseline.py flags for ``config`` (contiguous K/V of L = cache + new keys)."""
    args = [f"--batch={config.batch}", f"--num_heads_q={config.num_heads_q}",
            f"--num_heads_kv={config.num_heads_kv}", f"--seq_len_qo={config.seq_len_qo}",
            f"--seq_len_kv={config.seq_len_kv + config.seq_len_kv_cache}",
            f"--head_dim={config.head_dim}", f"--dtype={config.dtype}",
            f"--iterations={iterations}"]
    return args + (["--is_causal"] if config.is_causal else [])


class _TorchBaseline:
    timeout = 600
    rounds = 1

    def run(self, config: RunConfig):
        self.result = run_torch_baseline(torch_args(config))
        problem = runner.build_problem(config)
        self.flops = runner.flop_count(problem)
        self.kv_bytes = runner.kv_bytes(problem)

    def track_ms(self, *params):
        """Best milliseconds per call of torch SDPA (2 threads, separate process)."""
        return self.result["best_ms"]

    track_ms.unit = "ms"


class TorchPrefill(_TorchBaseline):
    """torch SDPA on the Prefill D128 fp32 shape (causal: bottom-right, as fmha)."""

    params = [[False, True]]
    param_names = ["causal"]

    def setup(self, causal):
        self.run(prefill_config(causal))

    def track_tflops(self, causal):
        return self.flops / (self.result["best_ms"] * 1e-3) / 1e12

    track_tflops.unit = "TFLOP/s"


class TorchDecode(_TorchBaseline):
    """torch SDPA on the Decode shape, K/V contiguous, GQA through enable_gqa."""

    def setup(self):
        self.run(DECODE)

    def track_gbps(self):
        return self.kv_bytes / (self.result["best_ms"] * 1e-3) / 1e9

    track_gbps.unit = "GB/s"
