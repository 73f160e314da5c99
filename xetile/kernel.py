"""Kernel definition and launch: the thin layer between xetile code and numba-dpex.

* :func:`kernel` compiles a function written with ``numba_dpex.kernel_api`` and xetile
  primitives, optionally with a required sub-group size.
* :func:`factory` memoises a kernel factory on its (hashable) configuration, so each
  configuration is compiled once per process: numba-dpex freezes the closure variables
  of a factory as compile-time constants, and an identical kernel made again by a new
  factory call would be compiled again (0.2-4 s each on this device).
* :func:`launch` submits a kernel over an nd-range and waits for it (through
  :mod:`xetile.launcher`, which keeps compiled kernels on disk).
"""
from __future__ import annotations

import functools

import numba_dpex as dpex

from xetile import _dpex_patches, launcher
from xetile.runtime import device


def kernel(fn=None, *, sub_group_size=None):
    """Decorator: compile ``fn`` as a SYCL kernel.

    Parameters
    ----------
    fn : function
        ``fn(nditem, *arrays_and_scalars)``, written with ``numba_dpex.kernel_api``.
    sub_group_size : int, optional
        The sub-group size the device must use for this kernel (4, 8, 16, 32 or 64 on
        the OpenCL CPU runtime). ``None`` lets the device choose.
    """
    def wrap(f):
        if sub_group_size is not None:
            setattr(f, _dpex_patches.SUB_GROUP_SIZE_ATTR, int(sub_group_size))
        return dpex.kernel(f)
    return wrap(fn) if fn is not None else wrap


def factory(make):
    """Memoise a kernel factory ``make(config) -> kernel`` on its arguments.

    A kernel it makes is tagged with the factory's name and arguments: that is the
    kernel's identity in the SPIR-V cache on disk (:mod:`xetile.launcher`), so the
    arguments must say everything the kernel depends on besides the source code.
    """
    @functools.lru_cache(maxsize=None)
    @functools.wraps(make)
    def made(*args, **kwargs):
        result = make(*args, **kwargs)
        if hasattr(result, "get_compile_result"):  # a dispatcher (kernel or device
            # function; only kernels are launched), not a tuple of them
            setattr(result, launcher.IDENTITY_ATTR, (make.__module__, make.__qualname__,
                                                     args, tuple(sorted(kwargs.items()))))
        return result
    return made


def launch(kern, global_size, local_size, *args) -> None:
    """Run ``kern`` over ``NdRange(global_size, local_size)`` and wait for it.

    Dimension 0 is the lane dimension: sub-groups are formed along it, so map
    contiguous memory to dimension 0.
    """
    device()  # the first launch in a process runs the device self-check
    launcher.launch(kern, tuple(global_size), tuple(local_size), args)


class SubGroupSizeError(RuntimeError):
    """A kernel ran with another sub-group size than it requires."""


# kernels whose sub-group size was seen to be right (a property of the compiled binary:
# the runtime either vectorises a kernel or it does not, so one check per kernel is enough)
_verified: set = set()


def check_sub_group_size(status, expected: int, name: str, kern=None) -> None:
    """Raise unless ``status[0]`` (written by the kernel with
    :func:`xetile.subgroup.sub_group_size`) equals ``expected``.

    The OpenCL CPU runtime honours a required sub-group size only for a kernel it can
    vectorise; otherwise it runs the kernel one work-item at a time, silently, and every
    sub-group collective then sees a sub-group of 1 (seen: a uniform ``exp2`` of a value
    loaded from local memory was enough). Kernels that use collectives must report.
    With ``kern``, the status is read on that kernel's first launch only (reading it
    back costs a device round trip per call).
    """
    import dpnp

    if kern is not None and kern in _verified:
        return
    got = int(dpnp.asnumpy(status[:1])[0])
    if got != expected:
        raise SubGroupSizeError(
            f"kernel {name!r} ran with sub-group size {got} instead of {expected}: the "
            "device could not vectorise it, and its sub-group collectives would be wrong")
    if kern is not None:
        _verified.add(kern)
