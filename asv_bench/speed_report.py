"""The speed targets of the project, measured as ratios in one run.

    .venv/bin/python asv_bench/speed_report.py [--torch-python PATH] [--quick] [--json]

The seed shape runs with equal lengths (B2 Hq32 Hkv8, 1024 queries, 512 cached + 1024
new keys per sequence, D128) so that torch gets the same work; packed varlen inputs take
the same kernel path (dense inputs are packed the same way). Each fmha workload runs in
this process (inputs on the SYCL device, compile excluded);
torch's ``scaled_dot_product_attention`` runs in its own process (``torch_baseline.py``,
2 threads) with the same shapes, K/V contiguous: the cache already gathered for it, and
a boolean bottom-right mask for causal (torch's ``is_causal`` aligns top-left). Timings
are the best of a few calls; the machines are shared and noisy, so only ratios measured
back to back are meaningful. torch is taken from ``--torch-python`` or
``$FMHA_TORCH_PYTHON`` (a Python with ``torch==2.13.0``), else skipped.
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

SEED = dict(batch=2, num_heads_q=32, num_heads_kv=8, seq_len_qo=1024, seq_len_kv=1024,
            seq_len_kv_cache=512, head_dim=128, is_causal=True, use_paged_kv=True,
            page_size=128, varlen=False, dtype="float32", kv_layout="NHD")
DECODE = dict(batch=8, num_heads_q=32, num_heads_kv=8, seq_len_qo=1, seq_len_kv=0,
              seq_len_kv_cache=4096, head_dim=128, is_causal=False, use_paged_kv=True,
              page_size=64, varlen=False, dtype="float32", kv_layout="HND")


def fmha_time(iterations, **shape):
    """Best seconds per call of fmha.attention on one configuration, and its problem."""
    config = RunConfig(**{**shape, "seed": 0})
    problem = build_problem(config)
    kwargs = to_array_kind(problem.kwargs, "dpnp")
    synchronize(fmha.attention(**kwargs))       # compile + warm up
    best = float("inf")
    for _ in range(iterations):
        start = time.perf_counter()
        synchronize(fmha.attention(**kwargs))
        best = min(best, time.perf_counter() - start)
    return best, problem


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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--torch-python", default=os.environ.get("FMHA_TORCH_PYTHON"))
    p.add_argument("--quick", action="store_true", help="fewer iterations")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    it = 2 if args.quick else 5
    rows, ratios = [], {}

    def row(name, seconds, problem=None, unit="tflops"):
        extra = ""
        if problem is not None and unit == "tflops":
            extra = f"{flop_count(problem) / seconds / 1e12:.3f} TFLOP/s"
        elif problem is not None:
            extra = f"{kv_bytes(problem) / seconds / 1e9:.1f} GB/s"
        rows.append((name, seconds * 1e3, extra))

    def versus_torch(label, target, **shape):
        seconds, problem = fmha_time(it, **shape)
        row(f"fmha {label}", seconds, problem)
        baseline = torch_time(args.torch_python, it, **shape)
        if baseline:
            row(f"torch {label.split(' (')[0]} (contiguous K/V)", baseline)
            ratios[f"{label} / torch (target <= {target})"] = seconds / baseline
        return seconds

    # decode first: it streams 268 MB, and measured after the prefill workloads' large
    # allocations it ran up to 1.9x slower in the same process (previous session; fp16:
    # 18.9 vs 10.0 ms;
    # cause not pinned down, likely how the new arrays land in memory)
    decode, decode_problem = fmha_time(it * 3, **DECODE)
    row("fmha decode (HND pool, page 64)", decode, decode_problem, unit="gbps")
    decode_nhd, _ = fmha_time(it * 3, **dict(DECODE, kv_layout="NHD"))
    row("fmha decode (NHD pool)", decode_nhd, decode_problem, unit="gbps")
    decode_f16, _ = fmha_time(it * 3, **dict(DECODE, dtype="float16"))
    row("fmha decode float16", decode_f16)
    ratios["decode fp16 / fp32 time (target <= 0.6)"] = decode_f16 / decode
    torch_decode = torch_time(args.torch_python, it * 3, fold_gqa=True, **DECODE)
    if torch_decode:
        row("torch decode (contiguous, heads folded)", torch_decode)
        ratios["decode HND / torch (target <= 0.7)"] = decode / torch_decode
        ratios["decode NHD / torch"] = decode_nhd / torch_decode

    seed = versus_torch("seed (paged 128, causal, fp32)", 0.7, **SEED)
    versus_torch("non-causal, no cache", 1.0,
                 **dict(SEED, seq_len_kv_cache=0, use_paged_kv=False, is_causal=False))

    contiguous = dict(SEED, use_paged_kv=False)
    t_contig, _ = fmha_time(it, **contiguous)
    row("fmha seed, contiguous cache", t_contig)
    for page in (1, 16, 128):
        t_page, _ = fmha_time(it, **dict(SEED, page_size=page))
        row(f"fmha seed, page size {page}", t_page)
        target = 1.5 if page == 1 else 1.05
        ratios[f"paged {page} / contiguous (target <= {target})"] = t_page / t_contig
    t_hnd, _ = fmha_time(it, **dict(SEED, kv_layout="HND"))
    row("fmha seed, HND pool", t_hnd)
    ratios["NHD / HND prefill (target <= 1.1)"] = seed / t_hnd

    for dtype in ("float16", "bfloat16"):
        t_dt, _ = fmha_time(it, **dict(SEED, dtype=dtype))
        row(f"fmha seed {dtype}", t_dt)
        ratios[f"{dtype} / float32 prefill throughput (target >= 0.8)"] = seed / t_dt

    if args.json:
        print(json.dumps({"times_ms": {n: t for n, t, _ in rows}, "ratios": ratios}))
        return 0
    for name, ms, extra in rows:
        print(f"{name:52s} {ms:9.2f} ms  {extra}")
    print()
    for name, value in ratios.items():
        print(f"{name:60s} {value:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
