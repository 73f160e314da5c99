"""Sub-group built-ins and collectives for numba-dpex kernels.

A *sub-group* is the set of work-items (lanes) that the device runs in lock-step; on
Intel's OpenCL CPU runtime one sub-group is one SIMD register's worth of work-items
(16 float lanes with AVX-512). numba-dpex 0.23 exposes none of these functions, so each
is an ``@intrinsic`` that calls the portable SPIR-V operation:

================  =================================  ================================
function          SPIR-V                             result, per lane
================  =================================  ================================
lane_id()         BuiltIn SubgroupLocalInvocationId  this lane's index, 0..size-1
sub_group_id()    BuiltIn SubgroupId                 this sub-group's index in the wg
sub_group_size()  BuiltIn SubgroupSize               lanes in the sub-group
shuffle(x, i)     OpSubgroupShuffleINTEL             x of lane i
shuffle_xor(x,m)  OpSubgroupShuffleXorINTEL          x of lane (lane ^ m)
broadcast(x, i)   OpGroupBroadcast (i uniform)       x of lane i
reduce_max(x)     OpGroupFMax / OpGroupSMax, Reduce  max of x over the sub-group
reduce_add(x)     OpGroupFAdd / OpGroupIAdd, Reduce  sum of x over the sub-group
barrier()         OpControlBarrier, Subgroup scope   (waits for the sub-group)
================  =================================  ================================

``x`` may be float32 or int32/int64 (converted to int32 for shuffles). All collectives
must be reached by every lane of the sub-group (convergent).
"""
from __future__ import annotations

import llvmlite.ir as llvmir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba_dpex.kernel_api_impl.spirv.target import SPIRV_TARGET_NAME

from xetile import _dpex_patches  # noqa: F401  (SPV_INTEL_subgroups for llvm-spirv)

_I32 = llvmir.IntType(32)
_I64 = llvmir.IntType(64)
_F32 = llvmir.FloatType()
_SCOPE_SUBGROUP = 3          # SPIR-V Scope: Subgroup
_GROUP_OP_REDUCE = 0         # SPIR-V GroupOperation: Reduce
# SPIR-V memory semantics for the barrier: SequentiallyConsistent | WorkgroupMemory |
# CrossWorkgroupMemory, so local and global stores before it are seen after it.
_BARRIER_SEMANTICS = 0x10 | 0x100 | 0x200


def _builtin_u32(builder, name):
    """Load a SPIR-V built-in variable (an external ``i32 addrspace(1)`` global)."""
    gname = "__spirv_BuiltIn" + name
    var = builder.module.globals.get(gname)
    if var is None:  # declared once per module: a second declaration would be renamed
        var = cgutils.add_global_variable(builder.module, _I32, gname, addrspace=1)
        var.linkage = "external"
        var.global_constant = True
    return builder.load(var)


def _call(builder, mangled, retty, argtys, args):
    fnty = llvmir.FunctionType(retty, argtys)
    fn = cgutils.get_or_insert_function(builder.module, fnty, mangled)
    fn.calling_convention = "spir_func"
    fn.attributes.add("convergent")
    fn.attributes.add("nounwind")
    return builder.call(fn, args)


def _as_i32(context, builder, ty, val):
    return context.cast(builder, val, ty, types.int32)


def _builtin_intrinsic(name):
    @intrinsic(target=SPIRV_TARGET_NAME)
    def _impl(typingctx):
        def codegen(context, builder, sig, args):
            return builder.zext(_builtin_u32(builder, name), _I64)
        return types.int64(), codegen
    return _impl


lane_id = _builtin_intrinsic("SubgroupLocalInvocationId")
sub_group_id = _builtin_intrinsic("SubgroupId")
sub_group_size = _builtin_intrinsic("SubgroupSize")


def _is_float(ty):
    return isinstance(ty, types.Float)


def shuffle_xor_ir(builder, x, mask: int):
    """IR: float32 value ``x`` of lane ``lane ^ mask`` (as :func:`shuffle_xor`)."""
    fname = "__spirv_SubgroupShuffleXorINTEL"
    return _call(builder, f"_Z{len(fname)}{fname}fj", _F32, [_F32, _I32],
                 [x, llvmir.Constant(_I32, mask)])


def _shuffle_intrinsic(op):
    # Itanium-mangled SPIR-V names: <len>__spirv_<Op>INTEL, args (value, uint index)
    fname = f"__spirv_{op}INTEL"

    @intrinsic(target=SPIRV_TARGET_NAME)
    def _impl(typingctx, x, lane):
        def codegen(context, builder, sig, args):
            xty, lty = sig.args
            index = _as_i32(context, builder, lty, args[1])
            if _is_float(xty):
                val = context.cast(builder, args[0], xty, types.float32)
                return _call(builder, f"_Z{len(fname)}{fname}fj", _F32, [_F32, _I32],
                             [val, index])
            val = _as_i32(context, builder, xty, args[0])
            res = _call(builder, f"_Z{len(fname)}{fname}ij", _I32, [_I32, _I32],
                        [val, index])
            return context.cast(builder, res, types.int32, sig.return_type)
        ret = types.float32 if _is_float(x) else types.int32
        return ret(x, lane), codegen
    return _impl


shuffle = _shuffle_intrinsic("SubgroupShuffle")
shuffle_xor = _shuffle_intrinsic("SubgroupShuffleXor")


@intrinsic(target=SPIRV_TARGET_NAME)
def broadcast(typingctx, x, lane):
    """x of ``lane`` (a sub-group-uniform index) on every lane."""
    def codegen(context, builder, sig, args):
        xty, lty = sig.args
        scope = llvmir.Constant(_I32, _SCOPE_SUBGROUP)
        index = _as_i32(context, builder, lty, args[1])
        name = "__spirv_GroupBroadcast"
        if _is_float(xty):
            val = context.cast(builder, args[0], xty, types.float32)
            return _call(builder, f"_Z{len(name)}{name}ifj", _F32, [_I32, _F32, _I32],
                         [scope, val, index])
        val = _as_i32(context, builder, xty, args[0])
        return _call(builder, f"_Z{len(name)}{name}iij", _I32, [_I32, _I32, _I32],
                     [scope, val, index])
    ret = types.float32 if _is_float(x) else types.int32
    return ret(x, lane), codegen


def _reduce_intrinsic(float_op, int_op):
    @intrinsic(target=SPIRV_TARGET_NAME)
    def _impl(typingctx, x):
        def codegen(context, builder, sig, args):
            (xty,) = sig.args
            consts = [llvmir.Constant(_I32, _SCOPE_SUBGROUP),
                      llvmir.Constant(_I32, _GROUP_OP_REDUCE)]
            if _is_float(xty):
                val = context.cast(builder, args[0], xty, types.float32)
                name = f"__spirv_{float_op}"
                return _call(builder, f"_Z{len(name)}{name}iif", _F32,
                             [_I32, _I32, _F32], consts + [val])
            val = _as_i32(context, builder, xty, args[0])
            name = f"__spirv_{int_op}"
            return _call(builder, f"_Z{len(name)}{name}iii", _I32, [_I32, _I32, _I32],
                         consts + [val])
        ret = types.float32 if _is_float(x) else types.int32
        return ret(x), codegen
    return _impl


reduce_max = _reduce_intrinsic("GroupFMax", "GroupSMax")
reduce_add = _reduce_intrinsic("GroupFAdd", "GroupIAdd")


@intrinsic(target=SPIRV_TARGET_NAME)
def barrier(typingctx):
    """Wait until every lane of the sub-group arrives; orders memory across lanes."""
    def codegen(context, builder, sig, args):
        name = "__spirv_ControlBarrier"
        scope = llvmir.Constant(_I32, _SCOPE_SUBGROUP)
        _call(builder, f"_Z{len(name)}{name}jjj", llvmir.VoidType(), [_I32, _I32, _I32],
              [scope, scope, llvmir.Constant(_I32, _BARRIER_SEMANTICS)])
        return context.get_dummy_value()
    return types.void(), codegen

