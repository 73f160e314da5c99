"""torch ``scaled_dot_product_attention`` on the CPU, timed in a process of its own.

The asv classes ``TorchPrefill`` / ``TorchDecode`` (``benchmarks/bench_baselines.py``) run
this script in a subprocess, because torch's thread pool and the SYCL runtime's would
fight over the machine's 2 cores if they shared a process. It imports neither fmha nor
dpctl. Run by hand::

    python asv_bench/torch_baseline.py --batch=1 --num_heads_q=16 --seq_len_qo=512 \
        --seq_len_kv=512 --head_dim=128 --dtype=float32 --is_causal

It prints one JSON object: ``best_ms``, ``mean_ms``, ``times_ms``, ``torch``, ``threads``,
``causal_mode`` and the configuration. K and V are contiguous ``[B, Hkv, L, D]`` with
``L = --seq_len_kv`` (give cache + new keys); GQA goes through ``enable_gqa``. Causal is
aligned bottom-right like fmha: ``is_causal=True`` when Sq == L (where top-left and
bottom-right agree), else torch's ``causal_lower_right`` bias, else a boolean mask.
Exit status 3 when torch cannot be imported, 2 for bad flags.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

TORCH_MISSING_STATUS = 3


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="torch_baseline.py", description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=1, help="sequences B")
    p.add_argument("--num_heads_q", type=int, default=16, help="query heads Hq")
    p.add_argument("--num_heads_kv", type=int, default=None,
                   help="key/value heads Hkv (default Hq); Hq must be a multiple")
    p.add_argument("--seq_len_qo", type=int, default=512, help="queries per sequence Sq")
    p.add_argument("--seq_len_kv", type=int, default=512,
                   help="keys per sequence L (cache + new keys)")
    p.add_argument("--head_dim", type=int, default=128, help="head dimension D")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                   help="dtype of q, k, v")
    p.add_argument("--is_causal", action="store_true", help="bottom-right causal mask")
    p.add_argument("--iterations", type=int, default=10, help="timed calls after 2 warm-ups")
    p.add_argument("--threads", type=int, default=2,
                   help="torch.set_num_threads (default 2: the machine's cores)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--causal_mode", choices=("bool", "lower_right"), default="bool",
                   help="how a bottom-right causal mask reaches SDPA when Sq != L: a "
                        "boolean mask (default; faster here) or causal_lower_right")
    p.add_argument("--fold_gqa", action="store_true",
                   help="decode form: fold the Hq/Hkv query heads of a KV head into the "
                        "query axis (one SDPA over [B, Hkv, G*Sq, D]); not with causal")
    args = p.parse_args(argv)
    if args.num_heads_kv is None:
        args.num_heads_kv = args.num_heads_q
    for name in ("batch", "num_heads_q", "num_heads_kv", "seq_len_qo", "seq_len_kv",
                 "head_dim", "iterations", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.num_heads_q % args.num_heads_kv:
        p.error(f"--num_heads_q ({args.num_heads_q}) must be a multiple of "
                f"--num_heads_kv ({args.num_heads_kv})")
    return args


def causal_mask(torch, sq: int, n: int, mode: str = "bool"):
    """The bottom-right causal mask for SDPA and its name (see the module docstring)."""
    if sq == n:
        return None, "is_causal"
    if mode == "bool":
        rows = torch.arange(sq)[:, None]
        return torch.arange(n)[None, :] <= rows + (n - sq), "bool mask"
    try:
        from torch.nn.attention.bias import causal_lower_right

        return causal_lower_right(sq, n), "causal_lower_right"
    except ImportError:
        rows = torch.arange(sq)[:, None]
        return torch.arange(n)[None, :] <= rows + (n - sq), "bool mask"


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as exc:
        print(f"torch_baseline.py: torch is not importable here ({exc}); "
              "pip install torch==2.13.0", file=sys.stderr)
        return TORCH_MISSING_STATUS
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dtype = getattr(torch, args.dtype)
    b, hq, hkv = args.batch, args.num_heads_q, args.num_heads_kv
    sq, n, d = args.seq_len_qo, args.seq_len_kv, args.head_dim
    if args.fold_gqa and args.is_causal:
        print("torch_baseline.py: --fold_gqa cannot be combined with --is_causal",
              file=sys.stderr)
        return 2
    q = torch.randn(b, hq, sq, d, dtype=dtype)
    k = torch.randn(b, hkv, n, d, dtype=dtype)
    v = torch.randn(b, hkv, n, d, dtype=dtype)
    mask, mode = (causal_mask(torch, sq, n, args.causal_mode) if args.is_causal
                  else (None, "none"))
    gqa = {"enable_gqa": True} if hkv != hq else {}
    if args.fold_gqa:  # [B, Hq, Sq, D] -> [B, Hkv, G * Sq, D]: plain attention per KV head
        q = q.reshape(b, hkv, (hq // hkv) * sq, d)
        gqa = {}

    def call():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                              is_causal=mode == "is_causal", **gqa)

    with torch.inference_mode():
        for _ in range(2):  # first calls pick kernels and allocate
            call()
        times = []
        for _ in range(args.iterations):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    print(json.dumps({
        "best_ms": min(times) * 1e3,
        "mean_ms": sum(times) / len(times) * 1e3,
        "times_ms": [t * 1e3 for t in times],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "causal_mode": mode,
        "config": {k: v for k, v in vars(args).items()},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
