"""The SYCL runtime set-up: a plain python finds the device; the CPU target; the
self-check; the numba-dpex patches; a trivial kernel; the README/CI command."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xetile
from xetile import _dpex_patches, runtime

ROOT = Path(__file__).resolve().parent.parent


def test_import_in_scrubbed_environment_sees_the_device():
    """No LD_LIBRARY_PATH, OCL_* or CL_* exported: `import fmha` must still work."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LD_", "OCL_", "CL_", "SYCL_", "ONEAPI_"))}
    code = ("import fmha, dpctl; from xetile import runtime; d = runtime.device(); "
            "print(d.backend, d.device_type)")
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "opencl" in res.stdout and "cpu" in res.stdout


@pytest.mark.parametrize("flags,expected", [
    ({"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx2", "fma"}, "skx"),
    ({"avx512f", "avx2", "fma"}, "core-avx2"),      # partial AVX-512: not skx
    ({"avx2", "fma", "sse4_2"}, "core-avx2"),
    ({"avx", "sse4_2"}, "corei7"),
    (set(), "corei7"),
])
def test_cpu_target_from_flags(flags, expected):
    assert runtime.choose_cpu_target(flags) == expected


def test_exported_values_are_respected():
    env = {"CL_CONFIG_CPU_TARGET_ARCH": "corei7", "OCL_ICD_FILENAMES": "/x.so"}
    assert runtime.configure_environment(env) == {}
    assert env == {"CL_CONFIG_CPU_TARGET_ARCH": "corei7", "OCL_ICD_FILENAMES": "/x.so"}
    empty = {}
    chosen = runtime.configure_environment(empty)
    assert chosen["CL_CONFIG_CPU_TARGET_ARCH"] == runtime.choose_cpu_target(
        runtime.read_cpu_flags())


def test_self_check_refuses_a_wrong_answer():
    dev = runtime.device()
    runtime.self_check(dev)  # the real device passes

    def miscompiled(dev):  # what the runtime returned for exp(arange) without a target
        x = np.arange(10.0)
        return [(np.where(x >= 4, 393216.0, np.exp(x)), np.exp(x))]

    with pytest.raises(runtime.DeviceUnavailableError, match="wrong answer"):
        runtime.self_check(dev, compute=miscompiled)


def test_trivial_kernel_computes_the_right_values():
    import dpnp

    @xetile.kernel
    def axpy(item, x, y, out):
        i = item.get_global_id(0)
        out[i] = 2.0 * x[i] + y[i]

    x = np.arange(37, dtype=np.float32)
    y = np.ones(37, dtype=np.float32)
    out = dpnp.zeros(37, dtype=np.float32)
    xetile.launch(axpy, (37,), (1,), dpnp.asarray(x), dpnp.asarray(y), out)
    np.testing.assert_array_equal(dpnp.asnumpy(out), 2 * x + y)


def test_patched_numba_dpex_functions_exist_and_are_wrapped():
    """Fails loudly when a numba-dpex upgrade moves a function xetile patches."""
    for module, cls_name, meth in _dpex_patches.PATCHED:
        cls = getattr(module, cls_name)
        fn = getattr(cls, meth)
        assert getattr(fn, "__xetile_patched__", False), f"{cls_name}.{meth} not patched"
        assert callable(fn.__wrapped__)
    _dpex_patches.apply()  # idempotent: no double wrapping
    fn = getattr(getattr(_dpex_patches.PATCHED[0][0], "Module"), "_generate_spirv")
    assert not getattr(fn.__wrapped__, "__xetile_patched__", False)


# a device function that keeps its argument in a stack slot, and its one caller
_TWO_FUNCTIONS_IR = """
define internal float @twice(float %x) {
  %slot = alloca float
  store float %x, float* %slot
  %y = load float, float* %slot
  %z = fadd float %y, %y
  ret float %z
}
define float @entry(float %x) {
  %r = call float @twice(float %x)
  ret float %r
}
"""


def test_only_kernel_libraries_are_optimised():
    """Patch 4: a device function's library is left as it is (the kernel's module links
    it in and is optimised); a kernel's library (inline_threshold set, as numba-dpex sets
    it before finalizing) gets the short pipeline: calls inlined, stack slots gone."""
    import llvmlite.binding as ll
    from numba_dpex.kernel_api_impl.spirv.codegen import SPIRVCodeLibrary

    upstream = []
    patched = _dpex_patches._optimize_final_module(lambda library: upstream.append(library))
    device_library = object.__new__(SPIRVCodeLibrary)
    kernel_library = object.__new__(SPIRVCodeLibrary)
    for library in (device_library, kernel_library):
        library._final_module = ll.parse_assembly(_TWO_FUNCTIONS_IR)
    kernel_library.inline_threshold = 2
    patched(device_library)
    patched(kernel_library)
    assert upstream == []  # O2 runs for neither
    assert str(device_library._final_module).count("alloca") == 1
    kernel = str(kernel_library._final_module)
    assert "alloca" not in kernel and "call " not in kernel and "fadd" in kernel


def test_a_kernel_calling_device_functions_is_optimised_after_linking():
    """The kernel's SPIR-V holds no stack slots left from numba's lowering of its device
    function (the kernel's module was optimised with the device function linked in)."""
    import dpnp
    import numba_dpex as dpex
    from numba import typeof
    from numba.core import types
    from numba_dpex.core.types.kernel_api.index_space_ids import NdItemType

    @dpex.device_func
    def twice_plus(a, b):
        c = a + a
        return c + b

    @xetile.kernel(sub_group_size=16)
    def axpy2(item, x, y, out):
        i = item.get_global_id(0)
        out[i] = twice_plus(x[i], y[i])

    x = np.arange(37, dtype=np.float32)
    y = np.ones(37, dtype=np.float32)
    out = dpnp.zeros(37, dtype=np.float32)
    args = (dpnp.asarray(x), dpnp.asarray(y), out)
    xetile.launch(axpy2, (37,), (1,), *args)
    np.testing.assert_array_equal(dpnp.asnumpy(out), 2 * x + y)
    signature = types.void(NdItemType(1), *map(typeof, args))
    module = str(axpy2.get_compile_result(signature).library.final_module)
    assert "twice_plus" in module and "alloca" not in module


def test_required_sub_group_size_is_honoured():
    import dpnp
    from xetile import subgroup

    for size in (8, 32):
        @xetile.kernel(sub_group_size=size)
        def report(item, out):
            out[item.get_global_id(0)] = subgroup.sub_group_size()

        out = dpnp.zeros(64, dtype=np.int64)
        xetile.launch(report, (64,), (64,), out)
        assert set(dpnp.asnumpy(out).tolist()) == {size}


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    command = ci[-1].strip()
    assert "pytest" in command
    assert f"    {command}\n" in readme, f"README does not show the CI command {command!r}"


def _fresh_spirv_context(load_additional_registries=None):
    """A new numba-dpex kernel target context, refreshed five times (as numba does, over
    and over, while it compiles), optionally with another ``load_additional_registries``."""
    import types as pytypes

    from numba_dpex.core.descriptor import dpex_kernel_target
    from numba_dpex.kernel_api_impl.spirv.target import SPIRVTargetContext

    ctx = SPIRVTargetContext(dpex_kernel_target.typing_context, "spirv")
    if load_additional_registries is not None:
        ctx.load_additional_registries = pytypes.MethodType(load_additional_registries, ctx)
    for _ in range(5):
        ctx.refresh()
    return ctx


def test_target_context_refresh_inserts_each_implementation_once():
    """Patch 3: refreshing again adds nothing, and every lookup picks the implementation
    that numba-dpex's own (re-inserting) refresh picks."""
    import math

    from numba.core import types
    from numba_dpex.kernel_api_impl.spirv.target import SPIRVTargetContext

    patched = _fresh_spirv_context()
    sizes = {key: len(table.versions) for key, table in patched._defns.items()}
    patched.refresh()
    patched.refresh()
    assert {key: len(table.versions) for key, table in patched._defns.items()} == sizes

    upstream = _fresh_spirv_context(SPIRVTargetContext.load_additional_registries.__wrapped__)
    assert len(upstream._defns[math.log].versions) > len(patched._defns[math.log].versions)

    def chosen(ctx, key, sig):
        try:
            return ctx._defns[key].find(sig)
        except Exception as exc:  # noqa: BLE001  (no implementation: compare that too)
            return type(exc)

    compared = 0
    for key, table in upstream._defns.items():
        for sig, _ in table.versions:
            if all(isinstance(t, types.Type) for t in sig):  # a concrete signature
                assert chosen(patched, key, sig) is chosen(upstream, key, sig), (key, sig)
                compared += 1
    assert compared > 100
