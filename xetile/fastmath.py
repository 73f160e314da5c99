"""Scalar math the tiles need and numba-dpex does not offer: exp2, log2 and fused multiply-add.

``exp2``/``log2`` call the OpenCL built-ins (online softmax works in base 2 with
log2(e) folded into the score scale, which saves a multiply per score). ``fma`` emits
``llvm.fma.f32``: the CPU runtime did not contract ``a * b + c`` on its own (measured: a
separate ``vmulps`` and ``vaddps``), which halves the peak of every dot product.
"""
from __future__ import annotations

import llvmlite.ir as llvmir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba_dpex.kernel_api_impl.spirv.target import SPIRV_TARGET_NAME

_F32 = llvmir.FloatType()


EXP2, LOG2 = "_Z4exp2f", "_Z4log2f"  # the OpenCL built-ins' mangled names (float)


def call_unary(builder, mangled, x):
    """IR: the OpenCL float built-in ``mangled`` applied to the float32 value ``x``."""
    fn = cgutils.get_or_insert_function(
        builder.module, llvmir.FunctionType(_F32, [_F32]), mangled)
    fn.calling_convention = "spir_func"
    fn.attributes.add("nounwind")
    fn.attributes.add("readnone")
    return builder.call(fn, [x])


def _opencl_unary(mangled):
    @intrinsic(target=SPIRV_TARGET_NAME)
    def _impl(typingctx, x):
        def codegen(context, builder, sig, args):
            return call_unary(builder, mangled,
                              context.cast(builder, args[0], sig.args[0], types.float32))
        return types.float32(x), codegen
    return _impl


exp2 = _opencl_unary(EXP2)
log2 = _opencl_unary(LOG2)


def fma_ir(builder, a, b, c):
    """IR: ``a * b + c`` of float32 values, one rounding (``llvm.fma.f32``)."""
    fn = builder.module.declare_intrinsic(
        "llvm.fma", [_F32], llvmir.FunctionType(_F32, [_F32, _F32, _F32]))
    return builder.call(fn, [a, b, c])


@intrinsic(target=SPIRV_TARGET_NAME)
def fma(typingctx, a, b, c):
    """``a * b + c`` in float32 with one rounding."""
    def codegen(context, builder, sig, args):
        return fma_ir(builder, *(context.cast(builder, v, t, types.float32)
                                 for v, t in zip(args, sig.args)))
    return types.float32(a, b, c), codegen
