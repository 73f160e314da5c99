"""The command-line runner behind ``python -m fmha``: build one problem, time, verify.

It builds random inputs for one configuration (the flags mirror the sycl-tla FMHA
example), runs one warm-up call (reported as the compile time, since the first call of a
kernel configuration JIT-compiles it), then ``--iterations`` timed calls, and reports the
mean and best time per call, TFLOP/s and the GB/s of K/V read. ``--verify`` compares the
output with a float64 NumPy reference. The asv suite (``asv_bench/``) builds its problems
with :func:`build_problem` too, so both measure the same thing.

>>> from fmha.runner import RunConfig, build_problem
>>> p = build_problem(RunConfig(batch=2, num_heads_q=4, num_heads_kv=2, seq_len_qo=3,
...                             seq_len_kv=5, head_dim=8, dtype="float32"))
>>> p.kwargs["q"].shape, p.kwargs["k"].shape           # [B, Sq, Hq, D], [B, Skv, Hkv, D]
((2, 3, 4, 8), (2, 5, 2, 8))
>>> visible_pairs([3], [5], causal=True)               # rows see 3, 4 and 5 keys
12

Exit status of :func:`main`: 0 ran (and passed, with ``--verify``); 1 the verification
failed; 2 invalid flags or a configuration the API rejects; 3 no usable SYCL device.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

DTYPES = ("bfloat16", "float16", "float32")
LAYOUTS = ("NHD", "HND")

# The single switch for where inputs live (the runner's --arrays default and the asv
# suite's only setting). "dpnp": on the SYCL device, so the timed calls exclude
# host<->device copies (bf16 travels as uint16 bits plus dtype="bfloat16"). "numpy": host
# arrays; fmha.attention then copies them to the device and back inside every call.
ARRAY_KIND = "dpnp"
ARRAY_KINDS = ("numpy", "dpnp")

# Per-dtype (atol, rtol) against the float64 reference: a value passes when
# |out - ref| <= atol + rtol * |ref|. Sized from the output's rounding unit (fp32 2**-24,
# fp16 2**-11, bf16 2**-8) plus the kernel's rounding of P to the input dtype before P.V
# and fp32 accumulation over up to a few thousand keys; the inputs are the same rounded
# values on both sides. Used unless tests/problems.py provides a table (_tolerance).
TOLERANCES = {
    "float32": (2e-5, 2e-4),
    "float16": (2e-3, 1e-2),
    "bfloat16": (1.6e-2, 4e-2),
}

# Bytes of float64 scores the reference may hold at once (it splits query rows to fit).
_REFERENCE_BLOCK_BYTES = 64 << 20


class ConfigError(ValueError):
    """An invalid combination of runner settings (exit status 2)."""


class UnsupportedError(Exception):
    """The API rejected the configuration on its first call (exit status 2)."""


@dataclass(frozen=True)
class RunConfig:
    """One problem shape; field names are the runner's flag names."""

    batch: int = 1
    num_heads_q: int = 16
    num_heads_kv: int = 16
    seq_len_qo: int = 512
    seq_len_kv: int = 512
    seq_len_kv_cache: int = 0
    page_size: int = 128
    use_paged_kv: bool = False
    varlen: bool = False
    is_causal: bool = False
    head_dim: int = 128
    dtype: str = "bfloat16"
    kv_layout: str = "NHD"
    seed: int = 0

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        for name in ("batch", "num_heads_q", "num_heads_kv", "seq_len_qo", "head_dim",
                     "page_size"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"--{name} must be >= 1, got {value}")
        for name in ("seq_len_kv", "seq_len_kv_cache"):
            value = getattr(self, name)
            if value < 0:
                raise ConfigError(f"--{name} must be >= 0, got {value}")
        if self.seq_len_kv + self.seq_len_kv_cache < 1:
            raise ConfigError("--seq_len_kv + --seq_len_kv_cache must be >= 1 "
                              f"(got {self.seq_len_kv} + {self.seq_len_kv_cache}): "
                              "attention needs at least one key")
        if self.num_heads_q % self.num_heads_kv:
            raise ConfigError(f"--num_heads_q ({self.num_heads_q}) must be a multiple of "
                              f"--num_heads_kv ({self.num_heads_kv})")
        if self.use_paged_kv and self.seq_len_kv_cache < 1:
            raise ConfigError("--use_paged_kv needs --seq_len_kv_cache >= 1 "
                              f"(got {self.seq_len_kv_cache}): the pages hold the cache")
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.kv_layout not in LAYOUTS:
            raise ConfigError(f"--kv_layout must be one of {', '.join(LAYOUTS)}, "
                              f"got {self.kv_layout!r}")

    def describe(self) -> str:
        """A one-line summary, e.g. ``B2 Hq32/Hkv8 Sq1024 Skv1024 cache512 paged128 ...``."""
        parts = [f"B{self.batch}", f"Hq{self.num_heads_q}/Hkv{self.num_heads_kv}",
                 f"Sq{self.seq_len_qo}", f"Skv{self.seq_len_kv}",
                 f"cache{self.seq_len_kv_cache}"]
        if self.seq_len_kv_cache:
            parts.append(f"paged{self.page_size}" if self.use_paged_kv else "contiguous")
            parts.append(self.kv_layout)
        if self.varlen:
            parts.append("varlen")
        parts.append("causal" if self.is_causal else "non-causal")
        parts += [f"D{self.head_dim}", self.dtype]
        return " ".join(parts)


@dataclass
class Problem:
    """Inputs for one :class:`RunConfig`, on the host.

    ``kwargs`` are the keyword arguments of :func:`fmha.attention` as NumPy arrays (bf16 as
    ``ml_dtypes.bfloat16``). ``dense`` holds, per sequence, the (q, k, v) it attends with
    before any packing or paging: q ``[Sq_b, Hq, D]``, k and v ``[L_b, Hkv, D]`` (its cache
    first, then its new keys); the verification starts from these, so it also checks the
    packing and the page table. ``seqlens_*`` are int64 ``[B]``.
    """

    config: RunConfig
    seqlens_q: np.ndarray
    seqlens_kv: np.ndarray
    seqlens_cache: np.ndarray
    kwargs: dict
    dense: list

    @property
    def seqlens_keys(self) -> np.ndarray:
        """Keys each sequence attends over, cache plus new: ``L_b``."""
        return self.seqlens_cache + self.seqlens_kv


def _host_dtype(name: str):
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def draw_seqlens(config: RunConfig, rng: np.random.Generator):
    """Per-sequence lengths (q, new kv, cache), each int64 ``[B]``.

    Without ``varlen`` every sequence has the requested lengths. With it, each length of
    each sequence is drawn independently and uniformly from ``[ceil(n/2), n]`` (n the
    requested length; 0 stays 0), so the flags give the longest sequence.
    """
    def draw(n):
        if not config.varlen or n == 0:
            return np.full(config.batch, n, dtype=np.int64)
        return rng.integers((n + 1) // 2, n + 1, size=config.batch, dtype=np.int64)

    return draw(config.seq_len_qo), draw(config.seq_len_kv), draw(config.seq_len_kv_cache)


def _cu(lengths) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)


def build_problem(config: RunConfig) -> Problem:
    """Random inputs for ``config`` (reproducible from ``config.seed``).

    Values are standard normal, rounded to ``config.dtype``. Varlen packs q and the new
    k/v as ``[total, H, D]`` with ``cu_seqlens``. A contiguous cache is
    ``[B, S_cache, Hkv, D]`` (HND: ``[B, Hkv, S_cache, D]``); a paged cache is a pool of
    ``used + spare`` pages whose order is shuffled, so consecutive pages of a sequence are
    not adjacent in the pool. Cache slots past a sequence's length (the tail of its last
    page, spare pages, unused page-table entries, which point at spare pages) hold random
    values too, so a kernel that reads them gives a wrong answer rather than a lucky one.
    """
    config.check()
    rng = np.random.default_rng(config.seed)
    sq, skv, sc = draw_seqlens(config, rng)
    dt = _host_dtype(config.dtype)
    hq, hkv, d = config.num_heads_q, config.num_heads_kv, config.head_dim

    def normal(*shape):
        return rng.standard_normal(shape, dtype=np.float32).astype(dt)

    dense = [(normal(int(sq[b]), hq, d), normal(int(sc[b] + skv[b]), hkv, d),
              normal(int(sc[b] + skv[b]), hkv, d)) for b in range(config.batch)]
    kw = {"causal": config.is_causal}

    if config.varlen:
        kw["q"] = np.concatenate([q for q, _, _ in dense])
        kw["cu_seqlens_q"] = _cu(sq)
    else:
        kw["q"] = np.stack([q for q, _, _ in dense])
    if config.seq_len_kv:
        new_k = [k[int(sc[b]):] for b, (_, k, _) in enumerate(dense)]
        new_v = [v[int(sc[b]):] for b, (_, _, v) in enumerate(dense)]
        if config.varlen:
            kw["k"], kw["v"] = np.concatenate(new_k), np.concatenate(new_v)
            kw["cu_seqlens_kv"] = _cu(skv)
        else:
            kw["k"], kw["v"] = np.stack(new_k), np.stack(new_v)

    if config.seq_len_kv_cache:
        caches = [(k[:int(sc[b])], v[:int(sc[b])]) for b, (_, k, v) in enumerate(dense)]
        if config.use_paged_kv:
            kw.update(_paged_cache(config, caches, rng, normal))
            kw["cache_seqlens"] = sc.astype(np.int32)
        else:
            kw.update(_contiguous_cache(config, caches, normal))
            if config.varlen:
                kw["cache_seqlens"] = sc.astype(np.int32)
        kw["kv_layout"] = config.kv_layout
    return Problem(config, sq, skv, sc, kw, dense)


def _contiguous_cache(config, caches, normal) -> dict:
    b, s, hkv, d = config.batch, config.seq_len_kv_cache, config.num_heads_kv, config.head_dim
    hnd = config.kv_layout == "HND"
    out = {}
    for name, which in (("k_cache", 0), ("v_cache", 1)):
        cache = normal(b, hkv, s, d) if hnd else normal(b, s, hkv, d)
        for i, kv in enumerate(caches):
            n = kv[which].shape[0]
            if hnd:
                cache[i, :, :n] = kv[which].transpose(1, 0, 2)
            else:
                cache[i, :n] = kv[which]
        out[name] = cache
    return out


def _paged_cache(config, caches, rng, normal) -> dict:
    page, hkv, d = config.page_size, config.num_heads_kv, config.head_dim
    pages_per_seq = [-(-kv[0].shape[0] // page) for kv in caches]
    used = sum(pages_per_seq)
    # a quarter more than needed (at least 2), so that free pages sit between used ones
    num_pages = used + max(2, used // 4)
    order = rng.permutation(num_pages).astype(np.int32)
    spare = order[used:]
    max_pages = -(-config.seq_len_kv_cache // page)
    table = np.resize(spare, (config.batch, max_pages)).astype(np.int32)
    hnd = config.kv_layout == "HND"
    pools = [normal(num_pages, hkv, page, d) if hnd else normal(num_pages, page, hkv, d)
             for _ in range(2)]
    start = 0
    for b, n_pages in enumerate(pages_per_seq):
        table[b, :n_pages] = order[start:start + n_pages]
        start += n_pages
        for which, pool in enumerate(pools):
            tokens = caches[b][which]
            for i in range(n_pages):
                chunk = tokens[i * page:(i + 1) * page]
                if hnd:
                    pool[table[b, i], :, :len(chunk)] = chunk.transpose(1, 0, 2)
                else:
                    pool[table[b, i], :len(chunk)] = chunk
    return {"k_cache": pools[0], "v_cache": pools[1], "page_table": table}


# ---------------------------------------------------------------- where the arrays live

def to_array_kind(kwargs: dict, kind: str = ARRAY_KIND) -> dict:
    """The API's keyword arguments with every array moved to ``kind`` ("numpy"/"dpnp").

    For dpnp, bf16 arrays become their uint16 bits and ``dtype="bfloat16"`` is added,
    since dpnp has no bf16 dtype.
    """
    if kind == "numpy":
        return dict(kwargs)
    if kind != "dpnp":
        raise ValueError(f"array kind must be one of {ARRAY_KINDS}, got {kind!r}")
    import dpnp
    from xetile import runtime

    device = runtime.device()
    out = {}
    for name, value in kwargs.items():
        if isinstance(value, np.ndarray):
            if value.dtype.name == "bfloat16":
                value = value.view(np.uint16)
                out["dtype"] = "bfloat16"
            value = dpnp.asarray(value, device=device)
        out[name] = value
    return out


def to_host(out, dtype: str) -> np.ndarray:
    """The API's output (numpy or dpnp; bf16 possibly as uint16 bits) as float64 numpy."""
    if not isinstance(out, np.ndarray):
        import dpnp

        out = dpnp.asnumpy(out)
    if dtype == "bfloat16" and out.dtype == np.uint16:
        out = out.view(_host_dtype("bfloat16"))
    return out.astype(np.float64)


def synchronize(out) -> None:
    """Wait until ``out`` is computed (dpnp: its queue drains; numpy: already done)."""
    first = out[0] if isinstance(out, tuple) else out
    queue = getattr(first, "sycl_queue", None)
    if queue is not None:
        queue.wait()


# ------------------------------------------------------------------- work and traffic

def visible_pairs(seqlens_q, seqlens_keys, causal: bool) -> int:
    """Number of (query, key) pairs attended to, summed over sequences.

    Causal is aligned bottom-right: query i of a sequence with Sq queries and L keys sees
    key j iff ``j <= i + L - Sq``, so row i sees ``clip(i + L - Sq + 1, 0, L)`` keys.
    """
    total = 0
    for s, n in zip(np.asarray(seqlens_q, np.int64), np.asarray(seqlens_keys, np.int64)):
        if not causal:
            total += int(s) * int(n)
            continue
        seen = np.clip(np.arange(s, dtype=np.int64) + (n - s + 1), 0, n)
        total += int(seen.sum())
    return total


def flop_count(problem: Problem) -> int:
    """FLOPs of the visible work: pairs x 4 x D x Hq (2 for Q.K^T, 2 for P.V per d)."""
    c = problem.config
    pairs = visible_pairs(problem.seqlens_q, problem.seqlens_keys, c.is_causal)
    return pairs * 4 * c.head_dim * c.num_heads_q


def kv_bytes(problem: Problem) -> int:
    """Bytes of K and V that must be read: each sequence's used cache plus new keys."""
    c = problem.config
    itemsize = _host_dtype(c.dtype).itemsize
    return int(problem.seqlens_keys.sum()) * c.num_heads_kv * c.head_dim * itemsize * 2


# ------------------------------------------------------------------------ verification

def reference_outputs(problem: Problem, softmax_scale: Optional[float] = None) -> list:
    """Float64 attention per sequence, ``[Sq_b, Hq, D]`` each, from ``problem.dense``.

    One kv head at a time, the query heads that share it (GQA) are stacked into one
    matrix, so each step is two matmuls; query rows are split into blocks so the float64
    scores stay under ``_REFERENCE_BLOCK_BYTES``. A query that sees no key (causal, with
    ``Sq_b > L_b``) gets a zero row.
    """
    c = problem.config
    group = c.num_heads_q // c.num_heads_kv
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(c.head_dim)
    outs = []
    for q, k, v in problem.dense:
        sq, n = q.shape[0], k.shape[0]
        out = np.zeros((sq, c.num_heads_q, c.head_dim))
        rows = max(1, _REFERENCE_BLOCK_BYTES // (8 * max(n, 1) * group))
        for h in range(c.num_heads_kv):
            kh = k[:, h].astype(np.float64)
            vh = v[:, h].astype(np.float64)
            heads = slice(h * group, (h + 1) * group)
            for r0 in range(0, sq, rows):
                r1 = min(sq, r0 + rows)
                qh = q[r0:r1, heads].astype(np.float64).transpose(1, 0, 2)  # [G, R, D]
                s = (qh @ kh.T) * scale                                     # [G, R, L]
                if c.is_causal:
                    i = np.arange(r0, r1)[:, None]
                    s[:, np.arange(n)[None, :] > i + (n - sq)] = -np.inf
                m = s.max(axis=-1, keepdims=True)
                m[~np.isfinite(m)] = 0.0
                p = np.exp(s - m)
                denom = p.sum(axis=-1, keepdims=True)
                o = (p @ vh) / np.where(denom > 0, denom, 1.0)              # [G, R, D]
                out[r0:r1, heads] = o.transpose(1, 0, 2)
        outs.append(out)
    return outs


def _tolerance(dtype: str):
    """(atol, rtol, where from) for ``dtype``: tests/problems.py's table when present
    (one table for the tests and the runner), else :data:`TOLERANCES`."""
    table = _problems_tolerances()
    if table and dtype in table:
        entry = table[dtype]  # a Tolerance(atol, rtol, lse_atol, lse_rtol) there
        return float(entry[0]), float(entry[1]), "tests/problems.py"
    atol, rtol = TOLERANCES[dtype]
    return atol, rtol, "fmha/runner.py"


def _problems_tolerances():
    """The tolerance table of ``tests/problems.py`` beside this package, if any."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "tests" / "problems.py"
    if not path.exists():
        return None
    try:
        spec = importlib.util.spec_from_file_location("_fmha_tests_problems", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception:  # a half-written helper must not break the runner
        return None
    table = getattr(module, "TOLERANCES", None)
    return table if isinstance(table, dict) else None


def verify(problem: Problem, out) -> dict:
    """Compare ``out`` (the API's output) with :func:`reference_outputs`.

    Returns a dict with ``passed``, ``max_abs_error``, ``atol``, ``rtol`` and
    ``tolerance_from`` (the file whose table gave them).
    """
    c = problem.config
    got = to_host(out, c.dtype)
    if c.varlen:
        cu = _cu(problem.seqlens_q)
        per_seq = [got[cu[b]:cu[b + 1]] for b in range(c.batch)]
    else:
        per_seq = [got[b] for b in range(c.batch)]
    atol, rtol, source = _tolerance(c.dtype)
    worst, passed = 0.0, True
    for g, ref in zip(per_seq, reference_outputs(problem)):
        if g.shape != ref.shape:
            raise ValueError(f"output of shape {g.shape} for a sequence, expected {ref.shape}")
        err = np.abs(g - ref)
        if err.size:
            worst = max(worst, float(np.max(err)) if np.all(np.isfinite(g)) else math.inf)
        passed &= bool(np.all(err <= atol + rtol * np.abs(ref)))
    return {"passed": passed, "max_abs_error": worst, "atol": atol, "rtol": rtol,
            "tolerance_from": source}


# ----------------------------------------------------------------------------- timing

def time_calls(call: Callable, iterations: int) -> list:
    """Seconds per call of ``call()`` (each waits for its output), ``iterations`` times."""
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        synchronize(call())
        times.append(time.perf_counter() - start)
    return times


def run(config: RunConfig, iterations: int = 10, check: bool = False,
        array_kind: str = ARRAY_KIND, attention: Optional[Callable] = None,
        log: Callable = lambda msg: print(msg, file=sys.stderr, flush=True)) -> dict:
    """Build, warm up, time and optionally verify one configuration; return the results.

    ``attention`` defaults to :func:`fmha.attention`. The keys of the returned dict are
    those printed by ``--json``.
    """
    if iterations < 1:
        raise ConfigError(f"--iterations must be >= 1, got {iterations}")
    if attention is None:
        import fmha

        attention = fmha.attention
    problem = build_problem(config)
    kwargs = to_array_kind(problem.kwargs, array_kind)

    def call():
        return attention(**kwargs)

    log(f"first call for {config.describe()} (compiles the kernel unless the SPIR-V "
        "cache has it: a few seconds)...")
    start = time.perf_counter()
    try:
        out = call()
    except (ValueError, NotImplementedError) as exc:
        raise UnsupportedError(str(exc).splitlines()[0] if str(exc)
                               else type(exc).__name__) from exc
    synchronize(out)
    compile_s = time.perf_counter() - start
    times = time_calls(call, iterations)
    mean_s, best_s = float(np.mean(times)), float(np.min(times))
    flops, nbytes = flop_count(problem), kv_bytes(problem)
    result = {
        "config": dataclasses.asdict(config),
        "description": config.describe(),
        "array_kind": array_kind,
        "seqlens_q": problem.seqlens_q.tolist(),
        "seqlens_kv": problem.seqlens_kv.tolist(),
        "seqlens_cache": problem.seqlens_cache.tolist(),
        "iterations": iterations,
        "compile_s": compile_s,
        "mean_ms": mean_s * 1e3,
        "best_ms": best_s * 1e3,
        "visible_pairs": visible_pairs(problem.seqlens_q, problem.seqlens_keys,
                                       config.is_causal),
        "flops": flops,
        "tflops": flops / best_s / 1e12,
        "kv_bytes": nbytes,
        "gbps": nbytes / best_s / 1e9,
        "verify": None,
    }
    if check:
        log("verifying against the float64 reference...")
        result["verify"] = verify(problem, out)
    return result


def format_report(result: dict) -> str:
    """The human-readable lines ``python -m fmha`` prints."""
    c = result["config"]
    lines = [
        f"config:  {result['description']} (arrays: {result['array_kind']}, "
        f"seed {c['seed']})",
    ]
    if c["varlen"]:
        lines.append(f"seqlens: q {result['seqlens_q']}  new kv {result['seqlens_kv']}  "
                     f"cache {result['seqlens_cache']}")
    counted = ("causal: only the visible (query, key) pairs are counted"
               if c["is_causal"] else "all (query, key) pairs")
    lines += [
        f"compile: {result['compile_s']:.3f} s (first call: compile, or build from the SPIR-V cache, + one run)",
        f"time:    mean {result['mean_ms']:.3f} ms, best {result['best_ms']:.3f} ms per "
        f"call over {result['iterations']} timed call(s)",
        f"compute: {result['tflops']:.4f} TFLOP/s at best time "
        f"({result['visible_pairs']} pairs x 4 x D x Hq = {result['flops'] / 1e9:.3f} "
        f"GFLOP; {counted})",
        f"K/V:     {result['gbps']:.3f} GB/s at best time "
        f"({result['kv_bytes'] / 1e6:.3f} MB of K and V read: used cache + new keys)",
    ]
    ver = result["verify"]
    if ver is not None:
        lines.append(f"verify:  {'PASS' if ver['passed'] else 'FAIL'} (max abs error "
                     f"{ver['max_abs_error']:.3e}; tolerance |err| <= {ver['atol']:g} + "
                     f"{ver['rtol']:g}*|ref| from {ver['tolerance_from']}, vs the "
                     "float64 reference)")
    return "\n".join(lines)


# -------------------------------------------------------------------------------- CLI

class _Parser(argparse.ArgumentParser):
    """Errors are one line (no usage block) and exit with status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    d = RunConfig()
    p = _Parser(
        prog="python -m fmha",
        description="Time (and optionally verify) fmha.attention on random inputs of one "
                    "configuration. Causal masks are aligned bottom-right: query i of a "
                    "sequence with Sq queries and L keys (cache + new) sees key j iff "
                    "j <= i + L - Sq.",
        epilog="Exit status: 0 ok, 1 verification FAIL, 2 invalid flags or unsupported "
               "configuration, 3 no usable SYCL device.")
    p.add_argument("--batch", type=int, default=d.batch,
                   help=f"number of sequences B (default {d.batch})")
    p.add_argument("--num_heads_q", type=int, default=d.num_heads_q,
                   help=f"query heads Hq, a multiple of --num_heads_kv (default {d.num_heads_q})")
    p.add_argument("--num_heads_kv", type=int, default=d.num_heads_kv,
                   help="key/value heads Hkv; query head h uses kv head h // (Hq/Hkv) "
                        f"(GQA; default {d.num_heads_kv})")
    p.add_argument("--seq_len_qo", type=int, default=d.seq_len_qo,
                   help=f"queries per sequence (max with --varlen; default {d.seq_len_qo})")
    p.add_argument("--seq_len_kv", type=int, default=d.seq_len_kv,
                   help="new keys/values per sequence, attended after the cache (max with "
                        f"--varlen; 0 = cache only; default {d.seq_len_kv})")
    p.add_argument("--seq_len_kv_cache", type=int, default=d.seq_len_kv_cache,
                   help="cached keys/values per sequence (max with --varlen; 0 = no cache; "
                        f"default {d.seq_len_kv_cache})")
    p.add_argument("--page_size", type=int, default=d.page_size,
                   help=f"tokens per page of the paged cache (default {d.page_size})")
    p.add_argument("--use_paged_kv", action="store_true",
                   help="store the cache as a shuffled pool of pages (with spare pages) "
                        "and a page table, instead of one contiguous block per sequence")
    p.add_argument("--varlen", action="store_true",
                   help="ragged batch: each sequence's q, new-kv and cache lengths are drawn "
                        "independently, uniformly in [ceil(n/2), n] for the flag's n "
                        "(reproducible from --seed), and q/k/v are packed with cu_seqlens")
    p.add_argument("--is_causal", action="store_true",
                   help="causal mask aligned bottom-right (query i sees key j iff "
                        "j <= i + L - Sq); TFLOP/s then counts only visible pairs")
    p.add_argument("--head_dim", type=int, default=d.head_dim,
                   help=f"head dimension D (default {d.head_dim})")
    p.add_argument("--dtype", choices=DTYPES, default=d.dtype,
                   help=f"input/output dtype (default {d.dtype})")
    p.add_argument("--kv_layout", choices=LAYOUTS, default=d.kv_layout,
                   help="cache layout: NHD = [.., tokens, Hkv, D], HND = [.., Hkv, tokens, D] "
                        f"(default {d.kv_layout})")
    p.add_argument("--iterations", type=int, default=10,
                   help="timed calls after the warm-up call (default 10)")
    p.add_argument("--verify", action="store_true",
                   help="compare with a float64 NumPy reference and print PASS/FAIL "
                        "(exit status 1 on FAIL)")
    p.add_argument("--seed", type=int, default=d.seed,
                   help=f"seed for the random inputs and --varlen lengths (default {d.seed})")
    p.add_argument("--json", action="store_true",
                   help="print the results as one JSON object instead of text")
    p.add_argument("--arrays", choices=ARRAY_KINDS, default=ARRAY_KIND,
                   help="where inputs live: dpnp = on the SYCL device, numpy = host "
                        f"(default {ARRAY_KIND})")
    return p


def config_from_args(args: argparse.Namespace) -> RunConfig:
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in vars(args).items() if k in fields})


def main(argv=None, attention: Optional[Callable] = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:  # argparse exits for --help and bad flags; return its status instead
        args = parser.parse_args(argv)
        config = config_from_args(args)
        config.check()
        if args.iterations < 1:
            raise ConfigError(f"--iterations must be >= 1, got {args.iterations}")
    except ConfigError as exc:
        try:
            parser.error(str(exc))
        except SystemExit as stop:
            return stop.code
    except SystemExit as stop:
        return stop.code
    try:
        result = run(config, args.iterations, args.verify, args.arrays, attention)
    except UnsupportedError as exc:
        print(f"{parser.prog}: error: unsupported configuration "
              f"{config.describe()}: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if type(exc).__name__ != "DeviceUnavailableError":
            raise
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(result) if args.json else format_report(result), flush=True)
    if result["verify"] is not None and not result["verify"]["passed"]:
        return 1
    return 0
