"""Unrolled device functions from small source templates.

numba-dpex keeps a ``PrivateArray`` indexed by a loop variable in memory (the CPU runtime
compiles it to gathers and scatters), so a register tile has to be a set of *named*
scalars: ``s0 .. s15``. numba has no unroll pragma, so the few functions that work on a
register tile are written once as a template and expanded here for the tile size in use.
The expanded source is kept on the function (``__xetile_source__``) for reading.
"""
from __future__ import annotations

import numba_dpex as dpex


def names(prefix: str, n: int) -> str:
    """``"s0, s1, s2"`` for ``names("s", 3)``."""
    return ", ".join(f"{prefix}{i}" for i in range(n))


def device_function(source: str, name: str, namespace: dict):
    """Compile ``source`` (which defines ``name``) and return it as a device function."""
    scope = dict(namespace)
    exec(compile(source, f"<xetile generated {name}>", "exec"), scope)  # noqa: S102
    fn = scope[name]
    fn.__xetile_source__ = source
    return dpex.device_func(fn)
