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
    starts_of = page_table.row_starts(4)
    ask = prefetch.prefetch_rows(4, 16, 10, 3)  # 4 rows of 10 elements, a request per 3

    @kernel(sub_group_size=16)
    def copy(item, src, table, dst, n_rows):
        i = item.get_global_id(0)
        # rows 0..3 of a source with pages of 2 rows of 10, the pages in table order
        ask(src, src, starts_of(table, 0, 2, 0, 20, 10, 0, n_rows), item.get_local_id(0))
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


@pytest.mark.parametrize("rows, lanes, width, line", [
    (16, 16, 128, 16),  # fp32 D128: 8 lines a row, two rows a statement
    (16, 16, 128, 32),  # 16-bit D128: 4 lines, four rows
    (16, 16, 40, 16),   # 3 lines: five rows, a lane left over
    (16, 16, 256, 16),  # 16 lines: a row a statement
    (16, 16, 400, 16),  # 25 lines: two statements a row, the second ragged
    (5, 8, 10, 3),      # fewer rows than a statement covers
])
def test_prefetch_rows_asks_for_every_line_once_per_lane(rows, lanes, width, line):
    """Runs the generated source on the host, lane by lane, with a recording
    prefetch_line: every line of every row is asked for, nothing outside the rows is,
    and no more statements are issued than the lines need."""
    source = prefetch.prefetch_rows(rows, lanes, width, line).py_func.__xetile_source__
    asked = []
    scope = {"u64": int, "prefetch_line": lambda ary, at: asked.append((ary, at))}
    exec(source, scope)  # noqa: S102
    starts = tuple(1000 * (7 * r % rows) + 3 for r in range(rows))  # rows in any order
    for lane in range(lanes):
        scope["prefetch"]("k", "v", starts, lane)
    lines = -(-width // line)
    wanted = {start + c * line for start in starts for c in range(lines)}
    for array in ("k", "v"):
        got = [at for ary, at in asked if ary == array]
        assert set(got) == wanted
        assert len(got) == lanes * (
            rows * -(-lines // lanes) if lines >= lanes else -(-rows // (lanes // lines)))


def test_decode_defaults_to_prefetch_on_this_device():
    assert decode.DecodeConfig.default(128).prefetch


@pytest.mark.parametrize("dtype, paged, page_size, layout", [
    ("float32", True, 16, "HND"), ("bfloat16", True, 5, "HND"),
    ("float16", False, 16, "HND"), ("float32", True, 3, "NHD")])
def test_decode_with_and_without_prefetch_agree_bitwise(monkeypatch, dtype, paged,
                                                        page_size, layout):
    """Keys over several tiles, a ragged last tile, pages smaller than a tile, a
    contiguous cache, both layouts."""
    kw = make_problem(batch=3, seqlens_q=1, seqlens_kv=[1, 0, 2], cache_seqlens=[70, 33, 5],
                      num_heads_q=8, num_heads_kv=2, head_dim=40, varlen=True, paged=paged,
                      page_size=page_size, kv_layout=layout, dtype=dtype, seed=3)
    out, lse = fmha.attention(**kw, return_lse=True)
    check_against_reference(kw, out, lse)
    monkeypatch.setattr(decode.prefetch, "supported", lambda: False)
    assert not decode.DecodeConfig.default(40, dtype).prefetch
    out_without, lse_without = fmha.attention(**kw, return_lse=True)
    np.testing.assert_array_equal(to_numpy(out, dtype).view(np.uint8),
                                  to_numpy(out_without, dtype).view(np.uint8))
    np.testing.assert_array_equal(lse.view(np.uint8), lse_without.view(np.uint8))
