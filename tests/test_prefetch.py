"""xetile.prefetch: the instruction reaches the device, and prefetching changes no bit.

Its speed is measured in asv_bench (speed_report.py's decode workloads), not here."""
import numpy as np
import pytest

import xetile  # noqa: F401  (configures the runtime before dpnp)
import dpnp

import fmha
from fmha import decode
from tests.problems import check_against_reference, make_problem, to_numpy
from xetile import factory, kernel, launch, launcher, page_table, prefetch

pytestmark = pytest.mark.skipif(not prefetch.supported(),
                                reason="prefetch needs an x86 CPU SYCL device")


@factory
def _prefetching_copy():
    walk = page_table.prefetch_rows(4, 10, 3)  # 4 rows of 10 elements, a request per 3

    @kernel(sub_group_size=16)
    def copy(item, src, table, dst, n_rows):
        i = item.get_global_id(0)
        if i == 0:
            # rows 0..3 of a source with pages of 2 rows, the pages in table order
            walk(src, src, table, 0, 2, 0, 20, 10, 0, n_rows)
        prefetch.prefetch_line(src, i)
        dst[i] = src[i]
    return copy


def test_prefetch_reaches_spirv_and_changes_nothing():
    src = np.arange(80, dtype=np.float32)
    args = (dpnp.asarray(src), dpnp.asarray(np.array([3, 0, 1], np.int32)),
            dpnp.zeros(80, dtype=np.float32), 3)
    spirv, _ = launcher.compile_spirv(_prefetching_copy(), args, 1)
    assert b"prefetcht0" in spirv  # inline assembly kept (SPV_INTEL_inline_assembly)
    launch(_prefetching_copy(), (80,), (16,), *args)
    np.testing.assert_array_equal(dpnp.asnumpy(args[2]), src)


def test_decode_defaults_to_prefetch_on_this_device():
    assert decode.DecodeConfig.default(128).prefetch


@pytest.mark.parametrize("dtype, paged, page_size", [("float32", True, 16),
                                                     ("bfloat16", True, 5),
                                                     ("float16", False, 16)])
def test_decode_with_and_without_prefetch_agree_bitwise(monkeypatch, dtype, paged,
                                                        page_size):
    """HND (the layout that prefetches): keys over several tiles, a ragged last tile,
    pages smaller than a tile, a contiguous cache."""
    kw = make_problem(batch=3, seqlens_q=1, seqlens_kv=[1, 0, 2], cache_seqlens=[70, 33, 5],
                      num_heads_q=8, num_heads_kv=2, head_dim=40, varlen=True, paged=paged,
                      page_size=page_size, kv_layout="HND", dtype=dtype, seed=3)
    out, lse = fmha.attention(**kw, return_lse=True)
    check_against_reference(kw, out, lse)
    monkeypatch.setattr(decode.prefetch, "supported", lambda: False)
    assert not decode.DecodeConfig.default(40, dtype).prefetch
    out_without, lse_without = fmha.attention(**kw, return_lse=True)
    np.testing.assert_array_equal(to_numpy(out, dtype).view(np.uint8),
                                  to_numpy(out_without, dtype).view(np.uint8))
    np.testing.assert_array_equal(lse.view(np.uint8), lse_without.view(np.uint8))
