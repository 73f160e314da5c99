"""Make the SYCL stack usable from a plain ``python``: import this before ``dpctl``.

The pinned 2024.2 oneAPI wheels need three things that nothing sets by default:

* the OpenCL ICD loader must find Intel's CPU runtime: the ``.icd`` file the wheel
  installs points at a conda build path, so we name the library directly with
  ``OCL_ICD_FILENAMES=<venv>/lib/libintelocl.so`` (read when dpctl first loads OpenCL);
* the CPU runtime must be told which instruction set to compile for. On CPUs it does not
  recognise (AMD EPYC prints ``Unknown host CPU``) it has been seen to *miscompile*
  vector float code, e.g. ``exp(arange(10.))`` gave 393216.0 for every x >= 4. We pick
  ``CL_CONFIG_CPU_TARGET_ARCH`` from the CPU's own flags (:func:`choose_cpu_target`);
* the shared libraries must find each other: ``scripts/setup.py`` repairs their RPATHs,
  because ``LD_LIBRARY_PATH`` is read once by the loader and is too late to set here.

A value the user exported is always respected. :func:`device` returns the SYCL device and,
the first time in a process, runs :func:`self_check`, which refuses to go on if a tiny
known computation comes back wrong.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPAIR_COMMAND = "python3 scripts/setup.py"

# CPU-flag sets and the runtime's names for them, best first. ``skx`` is AVX-512
# (Skylake-server), ``core-avx2`` is Haswell-class, ``corei7`` is SSE4.2 only.
_TARGETS = (
    ({"avx512f", "avx512bw", "avx512vl", "avx512dq"}, "skx"),
    ({"avx2", "fma"}, "core-avx2"),
)
SAFE_BASELINE_TARGET = "corei7"


def choose_cpu_target(cpu_flags) -> str:
    """Name the CPU runtime's compile target for a set of ``/proc/cpuinfo`` flags.

    >>> choose_cpu_target({"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"})
    'skx'
    >>> choose_cpu_target({"avx2", "fma"})
    'core-avx2'
    >>> choose_cpu_target({"sse4_2"})
    'corei7'
    """
    flags = set(cpu_flags)
    for needed, target in _TARGETS:
        if needed <= flags:
            return target
    return SAFE_BASELINE_TARGET


def read_cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set:
    """The flags of the first CPU listed in ``cpuinfo`` (empty if unreadable)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _venv_lib() -> Path:
    """``<prefix>/lib``, where the oneAPI wheels put their shared libraries."""
    return Path(sys.prefix) / "lib"


def configure_environment(environ=os.environ) -> dict:
    """Set what the OpenCL CPU runtime reads, unless already set; return what was set.

    Must run before the first ``import dpctl`` in the process (``xetile`` and ``fmha``
    import this module first, so importing either is enough).
    """
    chosen = {}
    icd = _venv_lib() / "libintelocl.so"
    if "OCL_ICD_FILENAMES" not in environ and icd.exists():
        chosen["OCL_ICD_FILENAMES"] = str(icd)
    if "CL_CONFIG_CPU_TARGET_ARCH" not in environ:
        chosen["CL_CONFIG_CPU_TARGET_ARCH"] = choose_cpu_target(read_cpu_flags())
    environ.update(chosen)
    return chosen


class DeviceUnavailableError(RuntimeError):
    """No usable SYCL device, or one that computes wrong answers."""


configure_environment()

_device = None


def device():
    """The SYCL device every kernel runs on (checked once per process).

    Raises
    ------
    DeviceUnavailableError
        When dpctl cannot be imported, sees no device, or the device fails
        :func:`self_check`; the message says how to repair it.
    """
    global _device
    if _device is None:
        try:
            import dpctl
        except ImportError as exc:  # a missing library, or dpctl not installed
            raise DeviceUnavailableError(
                f"cannot import dpctl ({exc}); the environment is missing or broken: "
                f"run `{REPAIR_COMMAND}` from the project root") from exc
        try:
            dev = dpctl.select_default_device()
        except Exception as exc:  # dpctl raises SyclDeviceCreationError
            raise DeviceUnavailableError(
                f"no SYCL device found ({exc}); OCL_ICD_FILENAMES="
                f"{os.environ.get('OCL_ICD_FILENAMES')!r}; run `{REPAIR_COMMAND}` "
                "(it repairs the library paths) and do not import dpctl before "
                "xetile/fmha") from exc
        self_check(dev)
        _device = dev
    return _device


def _known_answer(dev):
    """Compute exp over a range and an arange on ``dev``; return (got, expected) pairs."""
    import dpctl.tensor as dpt
    import numpy as np

    x = dpt.arange(16, dtype="f4", device=dev)
    return [
        (dpt.asnumpy(x), np.arange(16, dtype=np.float32)),
        (dpt.asnumpy(dpt.exp(dpt.astype(x, "f8"))), np.exp(np.arange(16.0))),
        (dpt.asnumpy(dpt.exp(x)), np.exp(np.arange(16, dtype=np.float32))),
    ]


def self_check(dev, compute=_known_answer) -> None:
    """Refuse a device whose vector float code is miscompiled.

    Raises
    ------
    DeviceUnavailableError
        If any known answer comes back wrong.
    """
    import numpy as np

    for got, expected in compute(dev):
        if not np.allclose(got, expected, rtol=1e-5, atol=0):
            raise DeviceUnavailableError(
                f"the SYCL device {dev.name!r} computed a wrong answer in the self-check "
                f"(expected {expected.tolist()}, got {got.tolist()}) with "
                f"CL_CONFIG_CPU_TARGET_ARCH={os.environ.get('CL_CONFIG_CPU_TARGET_ARCH')!r};"
                " the CPU runtime miscompiles for this target: unset it, or set one this "
                "CPU supports (skx for AVX-512, core-avx2 for AVX2, corei7 otherwise)")
