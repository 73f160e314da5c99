"""Shared pieces of the benchmark classes: problem building, timing, the torch subprocess.

Base classes that carry benchmark methods start with ``_``: asv skips those names, so
they are benchmarked only through the concrete classes that inherit them.

Problems come from :func:`fmha.runner.build_problem`, so ``python -m fmha`` and asv time
the same inputs, and where they live (host numpy or device dpnp) is decided by
``fmha.runner.ARRAY_KIND`` alone.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import fmha  # noqa: F401  (configures the SYCL runtime before anything imports dpctl)
from fmha import runner

TORCH_SCRIPT = Path(__file__).resolve().parent.parent / "torch_baseline.py"
# Interpreter for the torch baseline; torch may live in another venv than the project.
TORCH_PYTHON_ENV = "FMHA_TORCH_PYTHON"
# torch_baseline.py exits with this status when torch cannot be imported.
TORCH_MISSING_STATUS = 3


def best_seconds(call, repeats: int = 3) -> float:
    """Best wall time of ``call()`` (each waits for its output) over ``repeats`` calls."""
    return min(runner.time_calls(call, repeats))


class AttentionCase:
    """One problem for :func:`fmha.attention`, on the runner's array kind, JIT-warmed."""

    def __init__(self, config: runner.RunConfig):
        self.problem = runner.build_problem(config)
        self.kwargs = runner.to_array_kind(self.problem.kwargs, runner.ARRAY_KIND)
        self.flops = runner.flop_count(self.problem)
        self.kv_bytes = runner.kv_bytes(self.problem)
        try:  # the first call compiles the kernel for this configuration
            self.call()
        except ValueError as exc:  # the API rejects it: asv then skips this combination
            raise NotImplementedError(f"fmha.attention rejects {config.describe()}: "
                                      f"{exc}") from exc

    def call(self):
        out = fmha.attention(**self.kwargs)
        runner.synchronize(out)
        return out


class _AttentionBench:
    """Base of the fmha families: subclasses set ``params`` and :meth:`config`.

    ``time_attention`` and ``peakmem_attention`` call the warmed kernel; the subclass adds
    ``track_tflops`` (prefill) or ``track_gbps`` (decode) through the mixins below.
    """

    timeout = 300
    # Each call is milliseconds to a fraction of a second and was warmed in setup: one call
    # per sample, 3-10 samples within ~2 s, one process round (keeps the suite ~10 min).
    number = 1
    repeat = (3, 10, 2.0)
    warmup_time = 0.0
    rounds = 1

    def config(self, *params) -> runner.RunConfig:
        raise NotImplementedError

    def setup(self, *params):
        self.case = AttentionCase(self.config(*params))

    def time_attention(self, *params):
        self.case.call()

    def peakmem_attention(self, *params):
        self.case.call()


class _TracksTflops:
    def track_tflops(self, *params):
        """TFLOP/s at the best of 3 calls; causal counts only visible (query, key) pairs."""
        return self.case.flops / best_seconds(self.case.call) / 1e12

    track_tflops.unit = "TFLOP/s"


class _TracksGbps:
    def track_gbps(self, *params):
        """GB/s of K and V read (used cache + new keys) at the best of 3 calls."""
        return self.case.kv_bytes / best_seconds(self.case.call) / 1e9

    track_gbps.unit = "GB/s"


def torch_python() -> str:
    """The interpreter for torch_baseline.py, or raise NotImplementedError if no torch."""
    python = os.environ.get(TORCH_PYTHON_ENV)
    if python:
        return python
    # find_spec does not import torch: its thread pool stays out of this process
    if importlib.util.find_spec("torch") is None:
        raise NotImplementedError(f"torch is not installed (or set {TORCH_PYTHON_ENV})")
    return sys.executable


def run_torch_baseline(args, timeout: float = 600.0) -> dict:
    """Run ``torch_baseline.py args`` in its own process and return its JSON result."""
    proc = subprocess.run([torch_python(), str(TORCH_SCRIPT), *args], capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode == TORCH_MISSING_STATUS:
        raise NotImplementedError(proc.stderr.strip())
    if proc.returncode != 0:
        raise RuntimeError(f"torch_baseline.py failed ({proc.returncode}): {proc.stderr}")
    return json.loads(proc.stdout)
