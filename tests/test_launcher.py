"""xetile.launcher: the same results as numba-dpex's own launcher, and the SPIR-V cache on
disk (a second process builds from it without compiling)."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import xetile  # noqa: F401  (configures the runtime before dpnp)
import dpnp
import numba_dpex as dpex
from numba_dpex import kernel_api as kapi

from xetile import factory, kernel, launch, launcher
from xetile.dtypes import reinterpret

ROOT = Path(__file__).resolve().parent.parent


@factory
def _every_kind_kernel(width):
    @kernel
    def every_kind(item: kapi.NdItem, x, grid, view, out, scratch,
                   count, scale, scale32, offset32, flag):
        """out[r, c] from a 1-D array, a 2-D array, a strided view with an offset, five
        scalar kinds and a local accessor, over a 2-D nd-range."""
        c, r = item.get_global_id(0), item.get_global_id(1)
        lc, lr = item.get_local_id(0), item.get_local_id(1)
        slot = lr * width + lc
        scratch[slot] = x[c] * scale + grid[r, c]
        kapi.group_barrier(item.get_group())
        mirrored = scratch[lr * width + (width - 1 - lc)]
        value = mirrored + view[r] * scale32 + offset32 + count
        if flag:
            value = -value
        out[r, c] = value
    return every_kind


def _every_kind_args(rows, cols, width, flag):
    rng = np.random.default_rng(rows * 100 + cols)
    x = dpnp.asarray(rng.standard_normal(cols).astype(np.float32))
    grid = dpnp.asarray(rng.standard_normal((rows, cols)).astype(np.float32))
    base = dpnp.asarray(rng.standard_normal(3 * rows + 2).astype(np.float32))
    view = base[2::3]  # stride 3, offset 2: the data pointer and strides must be right
    out = dpnp.full((rows, cols), np.nan, dtype=np.float32)
    scratch = kapi.LocalAccessor(2 * width, np.float32)
    return [x, grid, view, out, scratch, 7, 0.5, np.float32(2.0), np.int32(-3), flag]


def _expected(args, width):
    x, grid, view = (dpnp.asnumpy(a) for a in args[:3])
    count, scale, scale32, offset32, flag = args[5:]
    rows, cols = grid.shape
    first = x[None, :] * scale + grid
    mirrored = first.reshape(rows, cols // width, width)[:, :, ::-1].reshape(rows, cols)
    value = mirrored + view[:, None] * scale32 + offset32 + count
    return -value if flag else value


@pytest.mark.parametrize("flag", [True, np.False_])
def test_same_results_as_numba_dpex_launcher(flag):
    width, rows, cols = 4, 6, 12
    kern = _every_kind_kernel(width)
    ours = _every_kind_args(rows, cols, width, flag)
    theirs = _every_kind_args(rows, cols, width, flag)
    launch(kern, (cols, rows), (width, 2), *ours)
    dpex.call_kernel(kern, dpex.NdRange((cols, rows), (width, 2)), *theirs)
    expected = _expected(ours, width)
    np.testing.assert_allclose(dpnp.asnumpy(ours[3]), expected, rtol=1e-6)
    np.testing.assert_array_equal(dpnp.asnumpy(ours[3]), dpnp.asnumpy(theirs[3]))


@kernel
def _scale_kernel(item: kapi.NdItem, x, out):
    i = item.get_global_id(0)
    out[i] = x[i] * 2


def test_flat_is_a_1d_view_without_dpnp():
    """launcher.Flat: elements [offset, offset + size) of a C-contiguous array (of any
    shape), read as another dtype of the same item size, exactly as the 1-D dpnp view."""
    base = dpnp.asarray(np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 7.5)
    bits = reinterpret(base, np.int32)  # float32 bits as int32: Flat reads float32 again
    flat = launcher.Flat(bits, np.float32, offset=5, size=16)
    assert launcher.signature([flat]) == launcher.signature([base.reshape(-1)[5:21]])
    ours, theirs = dpnp.zeros(16, dtype=np.float32), dpnp.zeros(16, dtype=np.float32)
    launch(_scale_kernel, (16,), (4,), flat, launcher.Flat(ours))
    launch(_scale_kernel, (16,), (4,), base.reshape(-1)[5:21], theirs)
    expected = (np.arange(24, dtype=np.float32) - 7.5)[5:21] * 2
    np.testing.assert_array_equal(dpnp.asnumpy(ours), expected)
    np.testing.assert_array_equal(dpnp.asnumpy(theirs), expected)
    with pytest.raises(ValueError, match="C-contiguous"):
        launcher.Flat(base[:, ::2])
    with pytest.raises(ValueError, match="item size"):
        launcher.Flat(base, np.float64)
    with pytest.raises(ValueError, match=r"elements \[20, 28\) are not inside"):
        launcher.Flat(base, offset=20, size=8)


def test_workspace_upload_and_flat_scratch_reuse_one_buffer():
    """workspace.upload copies the host array into the named buffer each call (growing it
    when too small); flat_scratch hands the same memory out as a Flat of ``count``."""
    from xetile import workspace

    queue = dpnp.zeros(1).sycl_queue
    first = workspace.upload("test.tables", np.arange(6, dtype=np.float32), queue)
    second = workspace.upload("test.tables", np.arange(4, dtype=np.float32)[::-1], queue)
    assert (first.array is second.array, second.size) == (True, 4)
    out = workspace.flat_scratch("test.out", 4, np.float32, queue)
    launch(_scale_kernel, (4,), (4,), second, out)
    np.testing.assert_array_equal(dpnp.asnumpy(out.array)[:4], [6, 4, 2, 0])
    grown = workspace.upload("test.tables", np.ones(9, dtype=np.float32), queue)
    assert grown.size == 9 and dpnp.asnumpy(grown.array)[:9].tolist() == [1.0] * 9
    workspace.release()


def test_argument_type_ids_are_dpctls():
    from dpctl._sycl_queue import kernel_arg_type as dpctl_ids

    assert launcher._INT32 == dpctl_ids.dpctl_int32.value  # noqa: SLF001
    assert launcher._INT64 == dpctl_ids.dpctl_int64.value  # noqa: SLF001
    assert launcher._UINT8 == dpctl_ids.dpctl_uint8.value  # noqa: SLF001
    assert launcher._FLOAT32 == dpctl_ids.dpctl_float32.value  # noqa: SLF001
    assert launcher._FLOAT64 == dpctl_ids.dpctl_float64.value  # noqa: SLF001
    assert launcher._VOID_PTR == dpctl_ids.dpctl_void_ptr.value  # noqa: SLF001
    assert launcher._LOCAL_ACCESSOR == dpctl_ids.dpctl_local_accessor.value  # noqa: SLF001


def test_bad_argument_is_named():
    kern = _every_kind_kernel(4)
    with pytest.raises(TypeError, match="cannot pass a list"):
        launch(kern, (4,), (4,), dpnp.zeros(4), [1, 2])


def test_bad_ranges_and_queues_are_named():
    import dpctl

    kern = _every_kind_kernel(4)
    with pytest.raises(ValueError, match="multiple of its local size"):
        launch(kern, (10,), (4,), dpnp.zeros(4))
    with pytest.raises(ValueError, match="of one length"):
        launch(kern, (8, 2), (4,), dpnp.zeros(4))
    other = dpctl.SyclQueue(dpnp.zeros(1).sycl_queue.sycl_device)
    with pytest.raises(ValueError, match="argument 1 lives on another SYCL queue"):
        launch(kern, (4,), (4,), dpnp.zeros(4), dpnp.zeros(4, sycl_queue=other))


def test_prune_keeps_the_newest_files(tmp_path):
    for age in range(5):
        path = tmp_path / f"{age}.spv"
        path.write_bytes(b"x")
        os.utime(path, (age, age))
    launcher._prune(tmp_path, keep=2)  # noqa: SLF001
    assert sorted(p.name for p in tmp_path.glob("*.spv")) == ["3.spv", "4.spv"]


def test_cache_key_follows_identity_and_signature():
    a, b = _every_kind_kernel(4), _every_kind_kernel(8)
    sig = launcher.signature(_every_kind_args(2, 8, 4, True))
    assert launcher.cache_key(a, sig, 2) != launcher.cache_key(b, sig, 2)
    assert launcher.cache_key(a, sig, 2) == launcher.cache_key(_every_kind_kernel(4), sig, 2)
    other = launcher.signature(_every_kind_args(2, 8, 4, True)[:-1] + [1])
    assert launcher.cache_key(a, sig, 2) != launcher.cache_key(a, other, 2)

    made_here = 3

    @kernel
    def closure(item, out):  # its constant lives in a closure: no identity across runs
        out[0] = made_here
    assert launcher.identity(closure) is None
    assert launcher.cache_key(closure, (), 1) is None


_CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import fmha, dpnp
    from xetile import launcher
    compiled = []
    original = launcher.compile_spirv
    def counting(*args):
        compiled.append(1)
        return original(*args)
    launcher.compile_spirv = counting
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 5, 2, 32)).astype(np.float32)
    k = rng.standard_normal((1, 7, 1, 32)).astype(np.float32)
    start = time.perf_counter()
    out = fmha.attention(q, k, k, causal=True)
    seconds = time.perf_counter() - start
    from fmha.reference import attention_reference
    expected = attention_reference(q, k, k, causal=True)
    print(json.dumps({"compiled": len(compiled), "seconds": seconds,
                      "error": float(np.abs(out - expected).max())}))
""")


def _run_child(cache):
    env = dict(os.environ, XETILE_CACHE_DIR=str(cache))
    res = subprocess.run([sys.executable, "-c", _CHILD], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_second_process_builds_from_the_disk_cache(tmp_path):
    first = _run_child(tmp_path)
    assert first["compiled"] >= 1 and first["error"] < 1e-4
    files = list(tmp_path.glob("*.spv"))
    assert len(files) == first["compiled"]
    second = _run_child(tmp_path)
    assert second["compiled"] == 0 and second["error"] < 1e-4
    for f in files:  # a damaged file is compiled again and replaced
        f.write_bytes(b"not a kernel\n" + b"\0" * 64)
    third = _run_child(tmp_path)
    assert third["compiled"] == first["compiled"] and third["error"] < 1e-4
    assert all(f.read_bytes() != b"not a kernel\n" + b"\0" * 64 for f in files)


def test_empty_cache_dir_keeps_nothing(monkeypatch):
    monkeypatch.setenv("XETILE_CACHE_DIR", "")
    assert launcher.cache_dir() is None
    monkeypatch.delenv("XETILE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert launcher.cache_dir() == Path("/somewhere/xetile")


def test_sources_changed_after_import_are_not_cached(tmp_path, monkeypatch):
    """A file edited while the process runs may not be the code it compiles: no cache
    key then (else the next process would get the old code under the new hash)."""
    package = tmp_path / "edited_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "kernels.py").write_text("X = 1\n")
    earlier = launcher._IMPORTED_AT - 60  # as if written before this process started
    for path in package.iterdir():
        os.utime(path, (earlier, earlier))
    monkeypatch.syspath_prepend(str(tmp_path))
    import edited_pkg.kernels  # noqa: F401

    monkeypatch.setattr(launcher, "_source_hashes", {})
    assert launcher._source_hash("edited_pkg.kernels") is not None
    later = launcher._IMPORTED_AT + 60
    os.utime(package / "kernels.py", (later, later))
    monkeypatch.setattr(launcher, "_source_hashes", {})
    assert launcher._source_hash("edited_pkg.kernels") is None
