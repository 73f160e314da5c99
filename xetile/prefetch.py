"""Software prefetch: ask for a cache line before it is read (x86 CPU devices only).

A CPU core waits on memory when a tile's first read of a line misses. The decode kernel
reads each K/V line once from memory and then computes on it from L1, so without help
its compute and its streaming take turns (``docs/design.md`` section 3b). Asking for the
next tile's lines while the current one is computed lets them overlap, in part (about
10% faster on the machine measured).

OpenCL's ``prefetch`` built-in does not do it here: the CPU runtime compiles it to a
library call (``__lprefetch``) per lane, and a call clobbers every vector register
(``vzeroupper`` and spills around it), which cost more than the prefetch saved. So
:func:`prefetch_line` is one x86 ``prefetcht0`` instruction, passed through SPIR-V as
inline assembly (``SPV_INTEL_inline_assembly``, enabled in :mod:`xetile._dpex_patches`;
the CPU runtime compiles it as written). Other devices would reject the instruction:
:func:`supported` says whether the device can take it, and kernels compile the call in
only when it does.

A prefetch is a hint: it never faults, never changes a result, and a line it misses is
simply read on demand. Callers still keep every address inside the array they were
given.
"""
from __future__ import annotations

import functools
import platform

import llvmlite.ir as llvmir
from numba import types
from numba.extending import intrinsic
from numba_dpex.kernel_api_impl.spirv.target import SPIRV_TARGET_NAME

CACHE_LINE_BYTES = 64


@functools.lru_cache(maxsize=None)
def supported() -> bool:
    """Whether kernels may use :func:`prefetch_line`: the SYCL device is this x86 CPU."""
    from xetile import runtime

    return (platform.machine().lower() in ("x86_64", "amd64")
            and bool(getattr(runtime.device(), "is_cpu", False)))


@intrinsic(target=SPIRV_TARGET_NAME)
def prefetch_line(typingctx, ary, index):
    """``prefetch_line(ary, index)``: fetch the cache line holding ``ary[index]`` into
    L1 (``prefetcht0``), without waiting for it. ``index`` is an element index."""
    def codegen(context, builder, sig, args):
        array = context.make_array(sig.args[0])(context, builder, args[0])
        at = context.cast(builder, args[1], sig.args[1], types.uint64)
        pointer = builder.gep(array.data, [at])
        signature = llvmir.FunctionType(llvmir.VoidType(), [pointer.type])
        builder.asm(signature, "prefetcht0 ($0)", "r", [pointer], side_effect=True)
        return context.get_dummy_value()
    return types.void(ary, index), codegen
