"""The speed targets of the project, measured as ratios in one run.

    .venv/bin/python asv_bench/speed_report.py [--torch-python PATH] [--rounds N] [--quick] [--json]

The seed shape runs with equal lengths (B2 Hq32 Hkv8, 1024 queries, 512 cached + 1024
new keys per sequence, D128) so that torch gets the same work; packed varlen inputs take
the same kernel path (dense inputs are packed the same way). Each fmha workload runs in
this process (inputs on the SYCL device, compile excluded); torch's
``scaled_dot_product_attention`` runs in its own process (``torch_baseline.py``, 2
threads) with the same shapes, K/V contiguous: the cache already gathered for it, and a
boolean bottom-right mask for causal (torch's ``is_causal`` aligns top-left). torch is
taken from ``--torch-python`` or ``$FMHA_TORCH_PYTHON`` (a Python with
``torch==2.13.0``), else skipped. A read-only SYCL kernel streaming as many bytes as
the decode workload (``benchmarks/bench_read_floor.py``) gives the machine's bandwidth
in the same run: decode's GB/s as a share of it is the bandwidth target. The first call
of a new configuration (compile + one run, nothing cached: ``XETILE_CACHE_DIR=``) is
timed first, in fresh processes, for the README's seed command and for the decode
workload.

The machines are shared and noisy, and the noise comes in spells of seconds: on one
machine torch's time for the same workload ranged over 143-313 ms between three runs.
So every workload (fmha and torch alike) is timed once per *round*, the workloads one
after the other, for ``--rounds`` rounds; each time reported is the best over the rounds
(of the best of a few calls each), and each ratio is taken between two such times.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import fmha  # noqa: E402  (configures the SYCL runtime first)
from fmha.runner import RunConfig, build_problem, flop_count, kv_bytes, synchronize, \
    to_array_kind  # noqa: E402

sys.path.insert(0, str(HERE))
from benchmarks.bench_read_floor import ReadCase, read_seconds  # noqa: E402

SEED = dict(batch=2, num_heads_q=32, num_heads_kv=8, seq_len_qo=1024, seq_len_kv=1024,
            seq_len_kv_cache=512, head_dim=128, is_causal=True, use_paged_kv=True,
            page_size=128, varlen=False, dtype="float32", kv_layout="NHD")
DECODE = dict(batch=8, num_heads_q=32, num_heads_kv=8, seq_len_qo=1, seq_len_kv=0,
              seq_len_kv_cache=4096, head_dim=128, is_causal=False, use_paged_kv=True,
              page_size=64, varlen=False, dtype="float32", kv_layout="HND")


# A SYCL kernel that only reads as many bytes as decode (asv_bench/benchmarks/
# bench_read_floor.py): the bandwidth this machine gives in this run.
READ_FLOOR = "read floor (SYCL read-only kernel, decode's bytes)"


def best_call(kwargs, iterations):
    """Best seconds per call of ``fmha.attention(**kwargs)`` over ``iterations`` calls."""
    best = float("inf")
    for _ in range(iterations):
        start = time.perf_counter()
        synchronize(fmha.attention(**kwargs))
        best = min(best, time.perf_counter() - start)
    return best


def torch_time(python, iterations, fold_gqa=False, **shape):
    """Best seconds per call of torch SDPA in its own process (None without torch)."""
    if python is None:
        return None
    keys = shape["seq_len_kv"] + shape["seq_len_kv_cache"]
    cmd = [python, str(HERE / "torch_baseline.py"), f"--batch={shape['batch']}",
           f"--num_heads_q={shape['num_heads_q']}", f"--num_heads_kv={shape['num_heads_kv']}",
           f"--seq_len_qo={shape['seq_len_qo']}", f"--seq_len_kv={keys}",
           f"--head_dim={shape['head_dim']}", f"--dtype={shape['dtype']}",
           f"--iterations={iterations}"]
    cmd += ["--is_causal"] if shape["is_causal"] else []
    cmd += ["--fold_gqa"] if fold_gqa else []
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        print(f"torch baseline failed: {res.stderr.strip()}", file=sys.stderr)
        return None
    return json.loads(res.stdout)["best_ms"] / 1e3


# `python -m fmha` arguments of the first-call workloads: the README's seed command (bf16,
# varlen, paged) and the decode workload
FIRST_CALLS = {
    "seed command (bf16)": ["--batch=2", "--num_heads_q=32", "--num_heads_kv=8",
                            "--seq_len_qo=1024", "--seq_len_kv=1024",
                            "--seq_len_kv_cache=512", "--varlen", "--is_causal",
                            "--use_paged_kv"],
    "decode (fp32, HND pool)": ["--batch=8", "--num_heads_q=32", "--num_heads_kv=8",
                                "--seq_len_qo=1", "--seq_len_kv=0",
                                "--seq_len_kv_cache=4096", "--page_size=64",
                                "--use_paged_kv", "--kv_layout=HND", "--dtype=float32"],
}


def first_call_seconds(runner_args):
    """The runner's first call (compile and one run) in a fresh process, nothing cached."""
    cmd = [sys.executable, "-m", "fmha", *runner_args, "--iterations=1", "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent,
                         env={**os.environ, "XETILE_CACHE_DIR": ""})
    if res.returncode != 0:
        print(f"first call failed: {res.stderr.strip()}", file=sys.stderr)
        return None
    return json.loads(res.stdout)["compile_s"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--torch-python", default=os.environ.get("FMHA_TORCH_PYTHON"))
    p.add_argument("--rounds", type=int, default=3,
                   help="times each workload is timed, interleaved (default 3)")
    p.add_argument("--quick", action="store_true", help="fewer iterations, one round")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    it = 2 if args.quick else 5
    rounds = 1 if args.quick else max(args.rounds, 1)
    torch = args.torch_python
    # before anything else runs here: each compiles in a process of its own
    first_calls = {name: first_call_seconds(runner_args)
                   for name, runner_args in FIRST_CALLS.items()}

    # name -> (how to time it once, its problem or None, unit). Decode first: it streams
    # 268 MB, and measured after the prefill workloads' large allocations it ran up to
    # 1.9x slower in the same process (a previous session; fp16: 18.9 vs 10.0 ms; cause
    # not pinned down, likely how the new arrays land in memory).
    workloads = {}

    def fmha(name, unit="tflops", iterations=it, **shape):
        problem = build_problem(RunConfig(**{**shape, "seed": 0}))
        kwargs = to_array_kind(problem.kwargs, "dpnp")
        workloads[name] = (lambda: best_call(kwargs, iterations), problem, unit)
        return problem

    def baseline(name, iterations=it, **shape):
        if torch:
            workloads[name] = (lambda: torch_time(torch, iterations, **shape), None, None)

    decode = fmha("fmha decode (HND pool, page 64)", "gbps", it * 3, **DECODE)
    floor = ReadCase(kv_bytes(decode))
    workloads[READ_FLOOR] = (lambda: read_seconds(floor, it * 3), floor, "read")
    fmha("fmha decode (NHD pool)", "gbps", it * 3, **dict(DECODE, kv_layout="NHD"))
    fmha("fmha decode float16", None, it * 3, **dict(DECODE, dtype="float16"))
    baseline("torch decode (contiguous, heads folded)", it * 3, fold_gqa=True, **DECODE)
    fmha("fmha seed (paged 128, causal, fp32)", **SEED)
    baseline("torch seed (contiguous K/V)", **SEED)
    non_causal = dict(SEED, seq_len_kv_cache=0, use_paged_kv=False, is_causal=False)
    fmha("fmha non-causal, no cache", **non_causal)
    baseline("torch non-causal, no cache (contiguous K/V)", **non_causal)
    fmha("fmha seed, contiguous cache", None, **dict(SEED, use_paged_kv=False))
    for page in (1, 16, 128):
        fmha(f"fmha seed, page size {page}", None, **dict(SEED, page_size=page))
    fmha("fmha seed, HND pool", None, **dict(SEED, kv_layout="HND"))
    for dtype in ("float16", "bfloat16"):
        fmha(f"fmha seed {dtype}", None, **dict(SEED, dtype=dtype))

    best = {name: float("inf") for name in workloads}
    for run, problem, _ in workloads.values():  # compile and warm up fmha's, untimed
        if problem is not None:
            run()
    for _ in range(rounds):
        for name, (run, _, _) in workloads.items():
            seconds = run()
            if seconds is not None:
                best[name] = min(best[name], seconds)
    times = {name: t for name, t in best.items() if t != float("inf")}

    ratios = {}

    def ratio(label, numerator, denominator):
        if numerator in times and denominator in times:
            ratios[label] = times[numerator] / times[denominator]

    ratio("decode fp16 / fp32 time (target <= 0.6)", "fmha decode float16",
          "fmha decode (HND pool, page 64)")
    ratio("decode HND / torch (target <= 0.7)", "fmha decode (HND pool, page 64)",
          "torch decode (contiguous, heads folded)")
    ratio("decode NHD / torch", "fmha decode (NHD pool)",
          "torch decode (contiguous, heads folded)")
    ratio("decode HND GB/s / read floor GB/s (target >= 0.45)", READ_FLOOR,
          "fmha decode (HND pool, page 64)")
    ratio("seed (paged 128, causal, fp32) / torch (target <= 0.7)",
          "fmha seed (paged 128, causal, fp32)", "torch seed (contiguous K/V)")
    ratio("non-causal, no cache / torch (target <= 1.0)", "fmha non-causal, no cache",
          "torch non-causal, no cache (contiguous K/V)")
    for page in (1, 16, 128):
        target = 1.5 if page == 1 else 1.05
        ratio(f"paged {page} / contiguous (target <= {target})",
              f"fmha seed, page size {page}", "fmha seed, contiguous cache")
    ratio("NHD / HND prefill (target <= 1.1)", "fmha seed (paged 128, causal, fp32)",
          "fmha seed, HND pool")
    for dtype in ("float16", "bfloat16"):
        ratio(f"{dtype} / float32 prefill throughput (target >= 0.8)",
              "fmha seed (paged 128, causal, fp32)", f"fmha seed {dtype}")

    if args.json:
        print(json.dumps({"times_ms": {n: t * 1e3 for n, t in times.items()},
                          "ratios": ratios, "rounds": rounds, "first_call_s": first_calls}))
        return 0
    print(f"best of {rounds} interleaved round(s)")
    for name, seconds in times.items():
        _, problem, unit = workloads[name]
        extra = ""
        if unit == "tflops":
            extra = f"{flop_count(problem) / seconds / 1e12:.3f} TFLOP/s"
        elif unit == "gbps":
            extra = f"{kv_bytes(problem) / seconds / 1e9:.1f} GB/s"
        elif unit == "read":
            extra = f"{problem.nbytes / seconds / 1e9:.1f} GB/s"
        print(f"{name:52s} {seconds * 1e3:9.2f} ms  {extra}")
    print()
    for name, value in ratios.items():
        print(f"{name:60s} {value:6.3f}")
    print()
    for name, seconds in first_calls.items():
        shown = f"{seconds:6.2f} s" if seconds is not None else "failed"
        print(f"{'first call, cold, ' + name + ' (target < 2 s)':60s} {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
