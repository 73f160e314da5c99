"""The only place where xetile changes numba-dpex 0.23 internals (applied once, on import).

numba-dpex has no sub-group functions and no way to ask for a sub-group size. Two small
patches add what xetile needs, and two remove compile time; each replaces or wraps the
original function:

1. ``spirv_generator.Module._generate_spirv`` gets ``--spirv-ext=+SPV_INTEL_subgroups,
   +SPV_INTEL_inline_assembly`` added to the llvm-spirv command line, so the
   ``__spirv_SubgroupShuffle*INTEL`` calls of :mod:`xetile.subgroup` translate to real
   SPIR-V ops (without the extension llvm-spirv leaves them as unresolved imports), and
   the one inline-assembly instruction of :mod:`xetile.prefetch` survives (llvm-spirv
   refuses inline assembly without it).
2. A kernel may carry a required sub-group size (``xetile.kernel(sub_group_size=16)``
   sets ``py_func.__xetile_sub_group_size__``). While numba-dpex lowers that kernel
   (``_SPIRVKernelCompiler._compile_to_spirv``) we remember the size, and when it builds
   the ``spir_kernel`` wrapper (``SPIRVTargetContext._finalize_kernel_wrapper_module``)
   we attach the ``intel_reqd_sub_group_size`` metadata, which llvm-spirv turns into the
   SubgroupSize execution mode. Without it the CPU runtime picks the size itself (16
   with AVX-512), and every lane-mapping decision would be a guess.
3. ``SPIRVTargetContext.load_additional_registries`` runs on every ``refresh()`` of the
   target context, and numba refreshes it hundreds of times per kernel (on each missed
   lookup of a typing template or a lowering). Upstream appends every OpenCL-math and
   dpnp implementation to the lowering tables *again* each time (``insert_func_defn``,
   not ``install_registry``, which would add only new ones). Each append also empties
   the table's lookup cache, so each lookup scans a list that keeps growing with
   duplicates: compiling the prefill kernel (4 row tiles) spent 4.4 of 14.7 profiled
   seconds in 584 such scans of ~935 entries each. The patch does what upstream does on
   the first call and afterwards inserts only registrations that are new; every lookup
   still picks the implementation upstream picks (``tests/test_runtime.py`` compares
   all of them).
4. ``SPIRVCodeLibrary._optimize_final_module`` runs LLVM's O2 pipeline on every library
   numba-dpex finalizes: each device function's own module (once per function and
   signature, when it is linked into a kernel), then the kernel's module, which holds
   the linked copies of all of them, again; and the CPU runtime runs its own full
   pipeline when it builds the SPIR-V. The patch skips the first kind (a library whose
   ``inline_threshold`` was never set is a device function's:
   ``_SPIRVKernelCompiler._compile_to_spirv`` sets it on the kernel's library just
   before finalizing it), and gives the kernel's module a short pipeline instead of O2:
   inline (upstream's threshold), SROA, instcombine, simplifycfg, global DCE. That
   hands the device compiler what it needs from us, one function with numba's stack
   variables in registers, and leaves the rest to it. Measured on the seed command's
   first call (session 8, cold, two runs each): the kernel's module took 0.31 s to
   optimise at O2 and 0.08 s with the short pipeline, the device build 0.78-0.80 s
   and 0.70-0.72, the whole first call 2.35-2.40 s and 2.01-2.11; the kernel ran as
   fast (best of 10: 77.3-79.6 ms and 77.8-78.4). Skipping the device functions' own
   optimisation had saved 0.2-0.3 s before that (session 7).

(Launching does not go through numba-dpex at all: :mod:`xetile.launcher` takes the
SPIR-V that numba-dpex compiles and submits it through dpctl's C interface.)

``tests/test_runtime.py`` fails loudly if an upgrade moves any patched function.
"""
from __future__ import annotations

import threading

import llvmlite.binding as ll
import llvmlite.ir as llvmir
from numba_dpex.kernel_api_impl.spirv import codegen as _codegen
from numba_dpex.kernel_api_impl.spirv import dispatcher as _dispatcher
from numba_dpex.kernel_api_impl.spirv import spirv_generator as _spirv_generator
from numba_dpex.kernel_api_impl.spirv import target as _target

SPIRV_EXTENSIONS = ("--spirv-ext=+SPV_INTEL_subgroups,+SPV_INTEL_inline_assembly",)
SUB_GROUP_SIZE_ATTR = "__xetile_sub_group_size__"
# (module, class name, method name) of every function patched here
PATCHED = (
    (_spirv_generator, "Module", "_generate_spirv"),
    (_dispatcher, "_SPIRVKernelCompiler", "_compile_to_spirv"),
    (_target, "SPIRVTargetContext", "_finalize_kernel_wrapper_module"),
    (_target, "SPIRVTargetContext", "load_additional_registries"),
    (_codegen, "SPIRVCodeLibrary", "_optimize_final_module"),
)
_MARK = "__xetile_patched__"
_compiling = threading.local()  # the required sub-group size of the kernel being lowered


def _generate_spirv(original):
    def generate_spirv(self, llvm_spirv_args, ipath, opath):
        args = list(llvm_spirv_args) + [a for a in SPIRV_EXTENSIONS
                                        if a not in llvm_spirv_args]
        return original(self, args, ipath, opath)
    return generate_spirv


def _compile_to_spirv(original):
    def compile_to_spirv(self, *args, **kwargs):
        _compiling.sub_group_size = getattr(self.py_func, SUB_GROUP_SIZE_ATTR, None)
        try:
            return original(self, *args, **kwargs)
        finally:
            _compiling.sub_group_size = None
    return compile_to_spirv


def _finalize_kernel_wrapper_module(original):
    def finalize_kernel_wrapper_module(self, fn):
        original(self, fn)
        size = getattr(_compiling, "sub_group_size", None)
        if size is not None:
            node = fn.module.add_metadata([llvmir.Constant(llvmir.IntType(32), size)])
            fn.set_metadata("intel_reqd_sub_group_size", node)
    return finalize_kernel_wrapper_module


_LOADS = "__xetile_registry_loads__"  # per target context: {registry: entries inserted}


def _load_additional_registries(original):
    def load_additional_registries(self):
        from numba_dpex.dpctl_iface import dpctlimpl
        from numba_dpex.dpnp_iface import dpnpimpl

        copied = (_target.mathimpl.registry, dpnpimpl.registry)  # re-inserted upstream
        inserted = self.__dict__.get(_LOADS)
        if inserted is None:  # the first call: upstream's
            inserted = self.__dict__[_LOADS] = {}
            original(self)
            for registry in copied:
                inserted[registry] = len(registry.functions)
            return
        new = False
        for registry in copied:
            start = inserted[registry]
            if len(registry.functions) > start:
                self.insert_func_defn(registry.functions[start:])
                inserted[registry] = len(registry.functions)
                new = True
        for registry in (_target.printimpl.registry, dpctlimpl.registry,
                         _target.spirv_registry):
            self.install_registry(registry)  # only what is new since the last call
        if new:
            self.replace_dpnp_ufunc_with_ocl_intrinsics()
    return load_additional_registries


def _optimize_final_module(original):
    def optimize_final_module(self):
        if "_inline_threshold" not in self.__dict__:
            return  # a device function's library: optimised in the kernel it is linked into
        # the kernel's library: inline, then clean up what numba's lowering leaves (its
        # variables in memory, its range iterators, dead blocks); the device compiler
        # runs its own full pipeline on the SPIR-V after this
        passes = ll.ModulePassManager()
        if self.inline_threshold > 0:  # as upstream: the threshold, else always-inline only
            passes.add_function_inlining_pass(self.inline_threshold)
        else:
            passes.add_always_inliner_pass()
        passes.add_sroa_pass()
        passes.add_instruction_combining_pass()
        passes.add_cfg_simplification_pass()
        passes.add_global_dce_pass()
        passes.run(self._final_module)
    return optimize_final_module


_WRAPPERS = {
    "_generate_spirv": _generate_spirv,
    "_compile_to_spirv": _compile_to_spirv,
    "_finalize_kernel_wrapper_module": _finalize_kernel_wrapper_module,
    "load_additional_registries": _load_additional_registries,
    "_optimize_final_module": _optimize_final_module,
}


def apply() -> None:
    """Install the patches (idempotent). Raises if numba-dpex moved a patched function."""
    for module, cls_name, meth in PATCHED:
        cls = getattr(module, cls_name, None)
        original = getattr(cls, meth, None)
        if original is None:
            raise ImportError(
                f"xetile cannot patch numba-dpex: {module.__name__}.{cls_name}.{meth} is "
                "gone (numba-dpex changed; xetile is written for numba-dpex 0.23.0)")
        if getattr(original, _MARK, False):
            continue
        patched = _WRAPPERS[meth](original)
        setattr(patched, _MARK, True)
        patched.__wrapped__ = original
        setattr(cls, meth, patched)


apply()
