"""Row statistics of a register tile, for online softmax.

A *register tile* row is a tuple ``(s_0, ..., s_{n-1})`` of float32 held by one lane
(see :mod:`xetile.mma`). These functions are unrolled over ``n`` for the same reason:

* ``row_max(s, m)``          ``max(m, s_0, ..., s_{n-1})``
* ``mask_row(s, first, end, limit)``
                             ``s_j``, or ``-inf`` where column ``first + j`` is
                             ``>= end`` or ``> limit``
* ``exp2_row(s, shift)``     ``(p, sum(p))`` with ``p_j = 2 ** (s_j - shift)``
"""
from __future__ import annotations

import numpy as np

from xetile import fastmath
from xetile._codegen import device_function, names
from xetile.kernel import factory


@factory
def row_max(n: int):
    body = ["def row_max(s, m):"]
    body += [f"    m = max(m, s[{j}])" for j in range(n)]
    body += ["    return m"]
    return device_function("\n".join(body), "row_max", _NAMESPACE)


@factory
def mask_row(n: int):
    body = ["def mask_row(s, first, end, limit):"]
    # the column's bound first, then one branch-free select per column (a conditional
    # expression with `and` is two branches each in numba's IR: 0.16 s to compile at
    # n = 16 against 0.05)
    body += ["    bound = min(end - 1, limit) - first"]
    body += [f"    m{j} = select({j} <= bound, s[{j}], NEG_INF)" for j in range(n)]
    body += [f"    return ({names('m', n)},)"]
    return device_function("\n".join(body), "mask_row", _NAMESPACE)


@factory
def exp2_row(n: int):
    body = ["def exp2_row(s, shift):"]
    body += [f"    p{j} = exp2(s[{j}] - shift)" for j in range(n)]
    body += [f"    return ({names('p', n)},), {' + '.join(f'p{j}' for j in range(n))}"]
    return device_function("\n".join(body), "exp2_row", _NAMESPACE)


def _namespace():
    import numba

    return {"numba": numba, "exp2": fastmath.exp2, "select": fastmath.select,
            "NEG_INF": np.float32(-np.inf)}


_NAMESPACE = _namespace()
