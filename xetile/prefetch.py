"""Software prefetch: ask for a cache line before it is read (x86 CPU devices only).

A CPU core waits on memory when a tile's first read of a line misses. The decode kernel
reads each K/V line once from memory and then computes on it from L1, so without help
its compute and its streaming take turns (``docs/design.md`` section 3b). Asking for the
next tile's lines while the current one is computed lets them overlap, in part (5-15%
faster on the machines measured).

OpenCL's ``prefetch`` built-in does not do it here: the CPU runtime compiles it to a
library call (``__lprefetch``) per lane, and a call clobbers every vector register
(``vzeroupper`` and spills around it), which cost more than the prefetch saved. So
:func:`prefetch_line` is one x86 ``prefetcht0`` instruction, passed through SPIR-V as
inline assembly (``SPV_INTEL_inline_assembly``, enabled in :mod:`xetile._dpex_patches`;
the CPU runtime compiles it as written). Other devices would reject the instruction:
:func:`supported` says whether the device can take it, and kernels compile the call in
only when it does.

The runtime runs inline assembly once per lane, each lane with its own operands. So
:func:`prefetch_rows` gives each lane a different line: one statement asks for as many
lines as there are lanes. With one address for all lanes, each line was asked for once
per lane, 16 times; on an Intel Xeon with AMX (2 cores, session 7) the decode call then
spent most of its samples on those instructions, and spreading them made it 8-10%
faster (``docs/design.md`` section 3b).

A prefetch is a hint: it never faults, never changes a result, and a line it misses is
simply read on demand. Callers still keep every address inside the array they were
given.
"""
from __future__ import annotations

import functools
import platform

import llvmlite.ir as llvmir
from numba import types
from numba import uint64
from numba.extending import intrinsic
from numba_dpex.kernel_api_impl.spirv.target import SPIRV_TARGET_NAME

from xetile._codegen import device_function
from xetile.kernel import factory

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


@factory
def prefetch_rows(rows: int, lanes: int, width: int, line: int):
    """``prefetch(a, b, starts, lane)``: ask for the cache lines of ``rows`` rows of two
    arrays laid out alike (K and V): row ``r`` is the ``width`` elements from
    ``a[starts[r]]`` (and from ``b[starts[r]]``), one line every ``line`` elements.

    ``starts`` is a sub-group-uniform tuple (:func:`xetile.page_table.row_starts`; a row
    past the end repeats a valid row's start, so nothing outside the rows is asked for).
    Each statement asks for ``lanes`` different lines, lane by lane: when a row has fewer
    lines than there are lanes, one statement covers several rows (lane ``i`` takes line
    ``i % lines`` of row ``i // lines``); when it has more, a row takes several
    statements. Lanes left over ask again for a line already asked for.
    Unrolled (generated source: ``__xetile_source__``).
    """
    lines = -(-width // line)  # cache lines of one row
    body = ["def prefetch(a, b, starts, lane):", "    lane = u64(lane)"]
    if lines >= lanes:
        for r in range(rows):
            for first in range(0, lines, lanes):
                body += [f"    at = starts[{r}] + "
                         f"(u64({first}) + lane % u64({min(lanes, lines - first)})) * u64({line})",
                         "    prefetch_line(a, at)",
                         "    prefetch_line(b, at)"]
    else:
        together = lanes // lines  # rows one statement covers
        body += [f"    row = lane // u64({lines})",
                 f"    column = (lane % u64({lines})) * u64({line})"]
        for first in range(0, rows, together):
            body += [f"    start = starts[{first}]"]
            body += [f"    start = starts[{first + r}] if row == u64({r}) else start"
                     for r in range(1, min(together, rows - first))]
            body += ["    prefetch_line(a, start + column)",
                     "    prefetch_line(b, start + column)"]
    return device_function("\n".join(body), "prefetch",
                           {"u64": uint64, "prefetch_line": prefetch_line})
