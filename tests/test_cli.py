"""The ``python -m fmha`` runner: flags, output, exit codes, and the inputs it builds.

Almost everything runs in-process through ``fmha.runner.main(argv, attention=...)``;
one test starts the real CLI in a subprocess (process start plus the first compile is
slow, so only once).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmha import runner
from fmha.runner import RunConfig, build_problem, visible_pairs

ROOT = Path(__file__).resolve().parent.parent
# host arrays: the fake attentions below answer with numpy
SMALL = ["--batch=2", "--num_heads_q=4", "--num_heads_kv=2", "--seq_len_qo=5",
         "--seq_len_kv=7", "--head_dim=8", "--iterations=2", "--arrays=numpy"]
PAGED = SMALL + ["--seq_len_kv_cache=9", "--use_paged_kv", "--page_size=4"]


def zeros_attention(q, **kwargs):
    """Stands in for fmha.attention where only the output's shape matters."""
    return np.zeros(q.shape, q.dtype)


def gather(problem):
    """Per sequence (k, v) ``[L_b, Hkv, D]`` read back from the API's kwargs.

    Written independently of the builder: follows the page table / cache_seqlens /
    cu_seqlens the way the API documents them.
    """
    kw, c = problem.kwargs, problem.config
    hnd = kw.get("kv_layout", "NHD") == "HND"
    out = []
    for b in range(c.batch):
        parts = []
        for name in ("k_cache", "v_cache"):
            if name not in kw:
                parts.append(np.zeros((0, c.num_heads_kv, c.head_dim), kw["q"].dtype))
                continue
            cache = kw[name]
            n = (int(kw["cache_seqlens"][b]) if "cache_seqlens" in kw
                 else c.seq_len_kv_cache)
            if "page_table" in kw:
                page = cache.shape[2 if hnd else 1]
                tokens = []
                for t in range(n):
                    p = kw["page_table"][b, t // page]
                    tokens.append(cache[p, :, t % page] if hnd else cache[p, t % page])
                parts.append(np.stack(tokens))
            else:
                parts.append(cache[b, :, :n].transpose(1, 0, 2) if hnd else cache[b, :n])
        for i, name in enumerate(("k", "v")):
            if name not in kw:
                continue
            if "cu_seqlens_kv" in kw:
                lo, hi = kw["cu_seqlens_kv"][b], kw["cu_seqlens_kv"][b + 1]
                new = kw[name][lo:hi]
            else:
                new = kw[name][b]
            parts[i] = np.concatenate([parts[i], new])
        out.append(tuple(parts))
    return out


def naive_attention(q, k, v, causal):
    """One query and one head at a time, float64, straight from the definition."""
    sq, hq, d = q.shape
    n, hkv, _ = k.shape
    out = np.zeros((sq, hq, d))
    for h in range(hq):
        g = h // (hq // hkv)
        for i in range(sq):
            keys = [j for j in range(n) if not causal or j <= i + n - sq]
            if not keys:
                continue
            s = np.array([q[i, h].astype(np.float64) @ k[j, g].astype(np.float64)
                          for j in keys]) / math.sqrt(d)
            p = np.exp(s - s.max())
            out[i, h] = (p / p.sum()) @ v[keys, g].astype(np.float64)
    return out


# ------------------------------------------------------------------- flags and --help

def test_defaults_and_flag_styles():
    args = runner.build_parser().parse_args(["--batch", "3", "--head_dim=64", "--varlen"])
    cfg = runner.config_from_args(args)
    assert (cfg.batch, cfg.head_dim, cfg.varlen, cfg.is_causal) == (3, 64, True, False)
    assert (cfg.page_size, cfg.dtype, cfg.kv_layout) == (128, "bfloat16", "NHD")
    assert args.iterations >= 1 and not args.verify and not args.json


def test_help_explains_every_flag(capsys):
    assert runner.main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--batch", "--num_heads_q", "--num_heads_kv", "--seq_len_qo",
                 "--seq_len_kv", "--seq_len_kv_cache", "--page_size", "--use_paged_kv",
                 "--varlen", "--is_causal", "--head_dim", "--dtype", "--iterations",
                 "--verify", "--kv_layout", "--seed", "--json"):
        assert flag in text
    assert "bottom-right" in text
    assert "uniformly in [ceil(n/2), n]" in text


@pytest.mark.parametrize("argv, message", [
    (["--num_heads_q=6", "--num_heads_kv=4"], "multiple of --num_heads_kv"),
    (["--batch=0"], "--batch must be >= 1"),
    (["--seq_len_qo=-1"], "--seq_len_qo must be >= 1"),
    (["--page_size=0"], "--page_size must be >= 1"),
    (["--use_paged_kv", "--seq_len_kv_cache=0"], "--use_paged_kv needs"),
    (["--seq_len_kv=0", "--seq_len_kv_cache=0"], "at least one key"),
    (["--iterations=0"], "--iterations must be >= 1"),
    (["--dtype=float64"], "invalid choice"),
    (["--batch=two"], "invalid int value"),
    (["--no_such_flag"], "unrecognized arguments"),
])
def test_invalid_flags_exit_2_with_one_line(argv, message, capsys):
    assert runner.main(argv, attention=zeros_attention) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_api_rejection_exits_2(capsys):
    def rejecting(**kwargs):
        raise ValueError("head_dim 8 is not supported\nmore detail")

    assert runner.main(SMALL, attention=rejecting) == 2
    err = capsys.readouterr().err
    assert "unsupported configuration" in err and "head_dim 8 is not supported" in err


# ------------------------------------------------------------------ output and status

def test_json_output_keys(capsys):
    assert runner.main(PAGED + ["--varlen", "--is_causal", "--json"],
                       attention=zeros_attention) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    for key in ("config", "description", "compile_s", "mean_ms", "best_ms", "tflops",
                "gbps", "flops", "kv_bytes", "visible_pairs", "iterations", "verify",
                "seqlens_q", "seqlens_kv", "seqlens_cache", "array_kind"):
        assert key in result
    assert result["verify"] is None and result["iterations"] == 2
    assert result["array_kind"] == "numpy"
    assert result["config"]["use_paged_kv"] and result["config"]["page_size"] == 4
    assert "first call for" in captured.err


def test_text_output_lines(capsys):
    assert runner.main(SMALL + ["--is_causal"], attention=zeros_attention) == 0
    out = capsys.readouterr().out
    for start in ("config:", "compile:", "time:", "compute:", "K/V:"):
        assert any(line.startswith(start) for line in out.splitlines())
    assert "only the visible (query, key) pairs" in out


def test_verify_fail_exits_1(capsys):
    assert runner.main(PAGED + ["--verify", "--dtype=float32"],
                       attention=zeros_attention) == 1
    assert "FAIL" in capsys.readouterr().out


def test_verify_pass_exits_0_with_correct_output(capsys):
    """An "attention" that answers from the runner's own dense inputs must PASS."""
    problem = build_problem(RunConfig(batch=2, num_heads_q=4, num_heads_kv=2, seq_len_qo=5,
                                      seq_len_kv=7, seq_len_kv_cache=9, use_paged_kv=True,
                                      page_size=4, head_dim=8, dtype="float16"))

    def exact(q, **kwargs):
        return np.stack([naive_attention(*dense, causal=False)
                         for dense in problem.dense]).astype(q.dtype)

    assert runner.main(PAGED + ["--verify", "--dtype=float16"], attention=exact) == 0
    assert "PASS" in capsys.readouterr().out


# ------------------------------------------------------------- inputs, FLOPs, bytes

@pytest.mark.parametrize("cfg", [
    RunConfig(batch=3, num_heads_q=4, num_heads_kv=2, seq_len_qo=5, seq_len_kv=3,
              seq_len_kv_cache=11, use_paged_kv=True, page_size=4, varlen=True,
              head_dim=8, dtype="float32", seed=1),
    RunConfig(batch=2, num_heads_q=2, num_heads_kv=1, seq_len_qo=4, seq_len_kv=0,
              seq_len_kv_cache=9, use_paged_kv=True, page_size=3, kv_layout="HND",
              head_dim=8, dtype="bfloat16"),
    RunConfig(batch=2, num_heads_q=2, num_heads_kv=2, seq_len_qo=3, seq_len_kv=4,
              seq_len_kv_cache=6, varlen=True, kv_layout="HND", head_dim=8,
              dtype="float16"),
    RunConfig(batch=2, num_heads_q=2, num_heads_kv=2, seq_len_qo=3, seq_len_kv=4,
              head_dim=8, dtype="float32"),
])
def test_packed_and_paged_inputs_gather_back_to_dense(cfg):
    problem = build_problem(cfg)
    for (k, v), (_, dk, dv) in zip(gather(problem), problem.dense):
        np.testing.assert_array_equal(k, dk)
        np.testing.assert_array_equal(v, dv)
    if cfg.use_paged_kv:
        table = problem.kwargs["page_table"]
        pool_pages = problem.kwargs["k_cache"].shape[0]
        used = [table[b, :-(-int(n) // cfg.page_size)] for b, n in
                enumerate(problem.seqlens_cache)]
        used = np.concatenate(used)
        assert len(set(used.tolist())) == len(used)          # no page shared
        assert pool_pages > len(used)                         # spare pages exist
        assert table.min() >= 0 and table.max() < pool_pages  # every entry in bounds


def test_varlen_lengths_are_reproducible_and_in_range():
    cfg = RunConfig(batch=64, seq_len_qo=10, seq_len_kv=7, seq_len_kv_cache=1,
                    varlen=True, seed=5)
    a = runner.draw_seqlens(cfg, np.random.default_rng(cfg.seed))
    b = runner.draw_seqlens(cfg, np.random.default_rng(cfg.seed))
    for x, y, n in zip(a, b, (10, 7, 1)):
        np.testing.assert_array_equal(x, y)
        assert x.min() >= (n + 1) // 2 and x.max() <= n
    assert len(set(a[0].tolist())) > 1


@pytest.mark.parametrize("causal", [False, True])
def test_reference_matches_naive_definition(causal):
    cfg = RunConfig(batch=2, num_heads_q=4, num_heads_kv=2, seq_len_qo=6, seq_len_kv=2,
                    seq_len_kv_cache=3, varlen=True, is_causal=causal, head_dim=8,
                    dtype="float32", seed=3)
    problem = build_problem(cfg)
    for ref, dense in zip(runner.reference_outputs(problem), problem.dense):
        np.testing.assert_allclose(ref, naive_attention(*dense, causal=causal),
                                   rtol=1e-12, atol=1e-12)


def test_reference_hand_case():
    """One query, two keys with scores 0 and log(3) (scale 1): weights 1/4 and 3/4."""
    problem = build_problem(RunConfig(batch=1, num_heads_q=1, num_heads_kv=1, seq_len_qo=1,
                                      seq_len_kv=2, head_dim=1, dtype="float32"))
    q, k, v = problem.dense[0]
    q[:], k[:, 0, 0], v[:, 0, 0] = 1.0, [0.0, math.log(3.0)], [4.0, 8.0]
    (out,) = runner.reference_outputs(problem, softmax_scale=1.0)
    assert out[0, 0, 0] == pytest.approx(0.25 * 4 + 0.75 * 8)


def test_visible_pairs_bottom_right():
    assert visible_pairs([4], [6], causal=False) == 24
    assert visible_pairs([4], [6], causal=True) == 3 + 4 + 5 + 6
    assert visible_pairs([4], [2], causal=True) == 0 + 0 + 1 + 2   # Sq > L: rows see none
    assert visible_pairs([2, 1], [2, 5], causal=True) == (1 + 2) + 5


def test_flops_and_bytes():
    problem = build_problem(RunConfig(batch=2, num_heads_q=4, num_heads_kv=2, seq_len_qo=3,
                                      seq_len_kv=5, seq_len_kv_cache=2, head_dim=8,
                                      dtype="float16"))
    assert runner.flop_count(problem) == 2 * 3 * 7 * 4 * 8 * 4
    assert runner.kv_bytes(problem) == 2 * 7 * 2 * 8 * 2 * 2  # B L Hkv D bytes (K and V)


# ------------------------------------------------------------------- the real thing

def test_cli_subprocess_verifies_real_attention():
    """``python -m fmha`` end to end on fmha.attention (compiles once: slow-ish)."""
    real = [a for a in PAGED if a not in ("--head_dim=8", "--arrays=numpy")]
    proc = subprocess.run(
        [sys.executable, "-m", "fmha", *real, "--head_dim=64", "--varlen", "--is_causal",
         "--verify", "--dtype=float16", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["verify"]["passed"] and result["array_kind"] == runner.ARRAY_KIND
    assert "first call for" in proc.stderr
