"""xetile: a small tiling DSL over numba-dpex.

Modules, one idea each:

* :mod:`xetile.runtime`   - makes the SYCL stack usable; device self-check
* :mod:`xetile.kernel`    - ``kernel`` (with a required sub-group size), ``factory``, ``launch``
* :mod:`xetile.subgroup`  - lane id, shuffles, broadcast, reductions
* :mod:`xetile.dtypes`    - float32 / float16 / bfloat16 storage, converted once per tile
* :mod:`xetile.tile`      - 2-D tiles of global arrays, masked loads and stores
* :mod:`xetile.page_table`- the (sequence, token) -> row mapping of a paged pool
* :mod:`xetile.prefetch`  - software prefetch of cache lines (x86 CPU devices)
* :mod:`xetile.mma`       - the emulated sub-group matrix multiply (no matrix unit here)
* :mod:`xetile.rowstats`  - row max / sum / rescale for online softmax
* :mod:`xetile.workspace` - reusable device scratch (fresh memory page-faults)
* :mod:`xetile.gemm`      - a GEMM written with all of the above (its first user)

Importing xetile configures the runtime, so import it before dpctl or dpnp.
"""
from xetile import runtime  # noqa: F401  (must precede every dpctl import)
from xetile.kernel import factory, kernel, launch  # noqa: E402

__all__ = ["factory", "kernel", "launch", "runtime"]
