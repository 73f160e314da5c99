"""The asv suite: ``asv check`` passes, and the pieces around it work without a network."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmha import runner

ROOT = Path(__file__).resolve().parent.parent
ASV_DIR = ROOT / "asv_bench"


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def benchmarks():
    """The ``benchmarks`` package of asv_bench, imported the way asv imports it."""
    sys.path.insert(0, str(ASV_DIR))
    try:
        import benchmarks.bench_baselines as baselines  # noqa: F401
        yield baselines
    finally:
        sys.path.remove(str(ASV_DIR))


def test_asv_check_passes():
    asv = shutil.which("asv", path=str(Path(sys.executable).parent)) or shutil.which("asv")
    if asv is None:
        pytest.skip("asv is not installed (the bench extra)")
    proc = subprocess.run([asv, "check", "--environment", f"existing:{sys.executable}"],
                          cwd=ASV_DIR, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No problems found" in proc.stdout


@pytest.mark.parametrize("causal, cache", [(False, 0), (True, 0), (True, 5)])
def test_plain_attention_baseline_matches_reference(benchmarks, causal, cache):
    cfg = runner.RunConfig(batch=2, num_heads_q=4, num_heads_kv=2, seq_len_qo=3,
                           seq_len_kv=4, seq_len_kv_cache=cache, is_causal=causal,
                           head_dim=8, dtype="float32")
    problem = runner.build_problem(cfg)
    q, k, v, bias = benchmarks.grouped_inputs(problem)
    out = benchmarks.plain_attention(np, q, k, v, bias, 1 / np.sqrt(cfg.head_dim))
    group = cfg.num_heads_q // cfg.num_heads_kv
    # [B, Hkv, G*Sq, D] back to [B, Sq, Hq, D]
    out = out.reshape(2, cfg.num_heads_kv, group, cfg.seq_len_qo, cfg.head_dim)
    out = out.transpose(0, 3, 1, 2, 4).reshape(2, cfg.seq_len_qo, cfg.num_heads_q, -1)
    for b, ref in enumerate(runner.reference_outputs(problem)):
        np.testing.assert_allclose(out[b], ref, rtol=1e-5, atol=1e-5)


def test_torch_args_give_total_keys(benchmarks):
    args = benchmarks.torch_args(benchmarks.DECODE)
    assert "--seq_len_kv=4097" in args and "--is_causal" in args


def test_torch_baseline_rejects_bad_flags():
    proc = subprocess.run([sys.executable, str(ASV_DIR / "torch_baseline.py"),
                           "--num_heads_q=6", "--num_heads_kv=4"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "multiple of" in proc.stderr


def test_screenshot_maps_cdn_urls_to_npm_packages():
    shot = load(ASV_DIR / "screenshot.py", "asv_screenshot")
    cases = {
        "https://code.jquery.com/jquery-3.3.1.min.js": ("jquery", "3.3.1",
                                                        "dist/jquery.min.js"),
        "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js":
            ("stupid-table-plugin", "1.0.1", "stupidtable.min.js"),
        "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css":
            ("bootstrap", "3.1.1", "dist/css/bootstrap.min.css"),
    }
    for url, expected in cases.items():
        parts = [f(p.fullmatch(url)) for p, f in shot._CDN_URL if p.fullmatch(url)]
        assert parts == [expected]
    names = ["jquery.flot.js", "examples/x/jquery.flot.min.js.map", "js/md5.min.js"]
    assert shot._member(names, "js/md5.min.js") == "js/md5.min.js"
    assert shot._member(names, "jquery.flot.min.js") == "jquery.flot.js"


def test_read_floor_kernel_reads_every_element_once():
    """The read floor (speed_report's bandwidth reference) really reads the whole array:
    each lane's sum is checked against numpy, over more than one work-group."""
    sys.path.insert(0, str(ASV_DIR))
    try:
        from benchmarks.bench_read_floor import CHUNK, LANES, ReadCase
    finally:
        sys.path.remove(str(ASV_DIR))
    import dpnp

    case = ReadCase(4 * CHUNK + 1)  # two work-groups
    values = (np.arange(case.data.size) % 7 - 3).astype(np.float32)
    case.data[...] = dpnp.asarray(values)
    case.call()
    expected = values.reshape(case.groups, CHUNK // LANES, LANES).sum(axis=1).reshape(-1)
    assert case.groups == 2
    np.testing.assert_allclose(dpnp.asnumpy(case.sums), expected)
