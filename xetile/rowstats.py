"""Row statistics of a register tile, for online softmax.

A *register tile* row is a tuple ``(s_0, ..., s_{n-1})`` of float32 held by one lane
(see :mod:`xetile.mma`). These functions are unrolled over ``n`` for the same reason:

* ``row_max(s, m)``          ``max(m, s_0, ..., s_{n-1})``
* ``mask_row(s, first, end, limit)``
                             ``s_j``, or ``-inf`` where column ``first + j`` is
                             ``>= end`` or ``> limit``
* ``exp2_row(s, shift)``     ``(p, sum(p))`` with ``p_j = 2 ** (s_j - shift)``, the sum
                             taken left to right

Each is an intrinsic written as LLVM IR (:class:`xetile._codegen.Emitter`), as the
register loops of :mod:`xetile.mma` are: as generated numba functions the three took
0.11 s to compile at n = 16, on each first call of a kernel configuration.
"""
from __future__ import annotations

from numba import types
from numba.extending import intrinsic
from numba_dpex.kernel_api_impl.spirv.target import SPIRV_TARGET_NAME

from xetile._codegen import Arg, Emitter
from xetile.kernel import factory

_FIRST, _SECOND, _THIRD, _FOURTH = map(Arg, range(4))


@factory
def row_max(n: int):
    def codegen(context, builder, sig, args):
        e = Emitter(context, builder, sig, args)
        m = e.f32(_SECOND)
        for j in range(n):
            m = e.max(m, e.f32(_FIRST, j))
        return m

    @intrinsic(target=SPIRV_TARGET_NAME)
    def row_max(typingctx, s, m):
        return types.float32(s, m), codegen
    return row_max


@factory
def mask_row(n: int):
    def codegen(context, builder, sig, args):
        e = Emitter(context, builder, sig, args)
        # the last column seen, relative to `first`: one bound, then a select per column
        bound = e.sub(e.smin(e.sub(e.i64(_THIRD), e.i64(1)), e.i64(_FOURTH)), e.i64(_SECOND))
        minus_inf = e.f32(float("-inf"))
        return e.float_tuple([e.select(e.sle(e.i64(j), bound), e.f32(_FIRST, j), minus_inf)
                              for j in range(n)])

    @intrinsic(target=SPIRV_TARGET_NAME)
    def mask_row(typingctx, s, first, end, limit):
        return types.UniTuple(types.float32, n)(s, first, end, limit), codegen
    return mask_row


@factory
def exp2_row(n: int):
    result = types.Tuple((types.UniTuple(types.float32, n), types.float32))

    def codegen(context, builder, sig, args):
        e = Emitter(context, builder, sig, args)
        shift = e.f32(_SECOND)
        p = [e.exp2(e.fsub(e.f32(_FIRST, j), shift)) for j in range(n)]
        total = p[0]
        for p_j in p[1:]:
            total = e.fadd(total, p_j)
        return context.make_tuple(builder, result, [e.float_tuple(p), total])

    @intrinsic(target=SPIRV_TARGET_NAME)
    def exp2_row(typingctx, s, shift):
        return result(s, shift), codegen
    return exp2_row
