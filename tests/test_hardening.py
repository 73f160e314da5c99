"""Hardening: what a kernel must never do, whatever the shapes.

* read what it should not: NaN canaries in unused pool pages, in the slots past
  ``cache_seqlens`` and behind unused page-table entries never reach the output;
* write what it should not: the bytes around ``out`` and every input stay untouched;
* produce NaN or inf: rows that see no key give exactly 0 and lse ``-inf``, huge and
  tiny logits stay finite and match the reference;
* depend on anything but its own sequence: two runs give identical bits, a sequence
  alone gives the same bits as inside a batch, NumPy and dpnp inputs give the same bits;
* trip over empty sequences, empty batches or more queries than keys.

Head dims stay within ``FAST_HEAD_DIMS`` so the kernels compiled here are shared with
the rest of the suite.
"""
import math

import numpy as np
import pytest

import fmha
from tests.problems import (DTYPES, as_float64, check_against_reference, make_problem,
                            sequence_rows, take_sequence, to_device, to_numpy)
from tests.reference import attention_reference

D = 16     # FAST_HEAD_DIMS[0]


def bits(x, dtype=None):
    """The raw bits of a result (NumPy or dpnp), for bitwise comparisons."""
    x = np.ascontiguousarray(to_numpy(x, dtype))
    return x.view(np.dtype(f"u{x.dtype.itemsize}"))


def assert_same_bits(a, b, what="out"):
    a, b = bits(a), bits(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    if not np.array_equal(a, b):
        where = tuple(int(i) for i in np.argwhere(a != b)[0])
        raise AssertionError(f"{what}: {int((a != b).sum())} of {a.size} elements differ in "
                             f"their bits, first at {where}")


def run(kwargs, **extra):
    """``fmha.attention(**kwargs, return_lse=True)`` as NumPy arrays ``(out, lse)``."""
    out, lse = fmha.attention(**kwargs, **extra, return_lse=True)
    return to_numpy(out, kwargs.get("dtype")), to_numpy(lse)


def ragged(page_size=4, **overrides):
    """Three sequences whose lengths straddle page boundaries, one of them empty."""
    config = dict(seqlens_q=[3, 0, 5], seqlens_kv=[2, 1, 0],
                  cache_seqlens=[page_size + 1, 0, 2 * page_size - 1], num_heads_q=4,
                  num_heads_kv=2, head_dim=D, varlen=True, causal=True, seed=3)
    return make_problem(**{**config, **overrides})


# ------------------------------------------------------------------- reads: canaries

@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
@pytest.mark.parametrize("page_size, table_fill", [(1, -1), (3, "spare"), (4, 2**31 - 1),
                                                   (16, "spare")])
def test_paged_canaries_never_reach_output(dtype, kv_layout, page_size, table_fill):
    kw = ragged(page_size=page_size, paged=True, kv_layout=kv_layout, spare_pages=3,
                page_table_padding=2, page_table_fill=table_fill, dtype=dtype)
    out, lse = run(kw)
    assert not np.isnan(as_float64(out)).any()
    check_against_reference(kw, out, lse)


@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
@pytest.mark.parametrize("varlen", [False, True])
def test_contiguous_cache_canaries_never_reach_output(kv_layout, varlen):
    kw = make_problem(batch=3, seqlens_q=4, seqlens_kv=2, cache_seqlens=[0, 5, 17],
                      num_heads_q=4, num_heads_kv=1, head_dim=D, kv_layout=kv_layout,
                      cache_padding=7, varlen=varlen, causal=True, seed=4)
    out, lse = run(kw)
    assert np.isfinite(out).all()
    check_against_reference(kw, out, lse)


def test_canaries_on_device():
    kw = ragged(page_size=3, paged=True, page_table_fill="spare", dtype="bfloat16")
    out, lse = fmha.attention(**to_device(kw), return_lse=True)
    check_against_reference(kw, to_numpy(out, "bfloat16"), to_numpy(lse))


# ------------------------------------------------------------------ writes: around out

SENTINEL = 0x7FA5           # a NaN payload in bf16 and fp16 alike; any real write shows


def _guarded_out(shape, storage_dtype, device, pad=37):
    """A buffer filled with a sentinel, and ``out``: a contiguous block in its middle."""
    n = int(np.prod(shape))
    itemsize = np.dtype(storage_dtype).itemsize
    words = np.full((n + 2 * pad) * itemsize // 2, SENTINEL, np.uint16)
    buffer = words.view(storage_dtype)
    if device:
        import dpnp

        buffer = dpnp.asarray(buffer)
    return buffer, buffer[pad:pad + n].reshape(shape), pad, n


@pytest.mark.parametrize("device", [False, True], ids=["numpy", "dpnp"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("varlen", [False, True])
def test_out_is_written_in_place_and_nothing_around_it(device, dtype, varlen):
    if varlen:
        kw = ragged(paged=True, page_size=3, dtype=dtype)
    else:
        kw = make_problem(batch=2, seqlens_q=5, seqlens_kv=3, cache_seqlens=[4, 9],
                          num_heads_q=2, head_dim=D, paged=True, page_size=5, dtype=dtype,
                          causal=True, seed=5)
    expected, _ = run(kw)
    args = to_device(kw) if device else kw
    storage = np.uint16 if (device and dtype == "bfloat16") else DTYPES[dtype]
    buffer, out, pad, n = _guarded_out(kw["q"].shape, storage, device)
    before = bits(buffer).copy()

    result = fmha.attention(**args, out=out)

    assert result is out
    after = bits(buffer)
    np.testing.assert_array_equal(after[:pad], before[:pad], err_msg="bytes before out")
    np.testing.assert_array_equal(after[pad + n:], before[pad + n:], err_msg="bytes after out")
    assert_same_bits(to_numpy(out, dtype if device else None), expected)


@pytest.mark.parametrize("device", [False, True], ids=["numpy", "dpnp"])
def test_inputs_are_not_modified(device):
    kw = ragged(paged=True, page_size=3, page_table_fill="spare", dtype="float16")
    args = to_device(kw) if device else kw
    before = {key: bits(value).copy() for key, value in args.items() if hasattr(value, "shape")}
    fmha.attention(**args, return_lse=True)
    for key, value in before.items():
        np.testing.assert_array_equal(bits(args[key]), value, err_msg=key)


# -------------------------------------------------------------- fully masked, NaN-free

@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_rows_seeing_no_key_are_zero_with_lse_minus_inf(dtype):
    # Sequence 0: Sq = 6 > L = 2 + 1, causal -> its first 3 queries see nothing.
    # Sequence 1: no keys at all. Sequence 2: normal.
    kw = make_problem(seqlens_q=[6, 2, 3], seqlens_kv=[1, 0, 3], cache_seqlens=[2, 0, 4],
                      num_heads_q=4, num_heads_kv=2, head_dim=D, dtype=dtype, varlen=True,
                      paged=True, page_size=3, causal=True, seed=6)
    out, lse = run(kw)
    out64 = as_float64(out)
    masked = np.r_[0:3, 6:8]
    assert (bits(out)[masked] == 0).all(), "masked rows must be +0.0 exactly"
    assert np.all(lse[:, masked] == -np.inf)
    assert np.isfinite(out64).all() and not np.isnan(lse).any()
    check_against_reference(kw, out, lse)


@pytest.mark.parametrize("causal", [False, True])
def test_more_queries_than_keys(causal):
    kw = make_problem(batch=2, seqlens_q=33, seqlens_kv=2, cache_seqlens=[3, 0],
                      num_heads_q=8, num_heads_kv=2, head_dim=D, paged=True, page_size=2,
                      causal=causal, seed=7)
    out, lse = run(kw)
    ref_out, ref_lse = check_against_reference(kw, out, lse)
    if causal:
        assert np.isneginf(ref_lse).any()       # the test exercises masked rows
        np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(ref_lse))


def _integer_valued(x, rng, limit=3):
    """Small integers in place of x's finite values (NaN canaries kept)."""
    values = rng.integers(-limit, limit + 1, size=x.shape).astype(np.float32)
    return np.where(np.isnan(x.astype(np.float32)), np.nan, values).astype(x.dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("target", [1e4, 1e-4])
def test_huge_and_tiny_logits(dtype, target):
    """max |scale * q.k| = 1e4 (softmax ~ argmax) or 1e-4 (softmax ~ uniform).

    q and k hold small integers, so every q.k is an exact integer in any float format,
    and distinct scores differ by at least ``scale`` (>= 1e4 / max|q.k|, far more than
    the ~1e-3 rounding of a 1e4 logit in float32): no near-ties that would make the
    comparison ill-conditioned. Exact ties stay exact ties in kernel and reference.
    """
    kw = ragged(paged=True, page_size=5, dtype=dtype, seed=8)
    rng = np.random.default_rng(8)
    for name in ("q", "k", "k_cache"):
        kw[name] = _integer_valued(kw[name], rng)
    kw["softmax_scale"] = target / _max_abs_score(kw)
    out, lse = run(kw)
    assert np.isfinite(as_float64(out)).all()
    assert not np.isnan(lse).any() and not np.isposinf(lse).any()
    check_against_reference(kw, out, lse)


def _max_abs_score(kw):
    """max |q.k| over every query and every key vector in the problem (NaN slots as 0)."""
    queries = kw["q"].astype(np.float64).reshape(-1, kw["q"].shape[-1])
    keys = np.concatenate([np.nan_to_num(kw[name].astype(np.float64)).reshape(
        -1, kw["q"].shape[-1]) for name in ("k", "k_cache") if kw.get(name) is not None])
    return float(np.abs(queries @ keys.T).max())


def test_huge_random_logits_stay_finite():
    kw = ragged(paged=True, page_size=4, dtype="float32", softmax_scale=2e3, seed=9)
    out, lse = run(kw)
    assert np.isfinite(out).all()
    assert not np.isnan(lse).any() and not np.isposinf(lse).any()
    _, ref_lse = attention_reference(**kw, return_lse=True)
    np.testing.assert_allclose(lse, ref_lse, rtol=1e-5)


# ------------------------------------------------------------------------ invariance

@pytest.mark.parametrize("device", [False, True], ids=["numpy", "dpnp"])
def test_bitwise_deterministic(device):
    kw = ragged(paged=True, page_size=3, dtype="bfloat16", seqlens_q=[40, 1, 17],
                cache_seqlens=[70, 0, 33])
    args = to_device(kw) if device else kw
    first = fmha.attention(**args, return_lse=True)
    second = fmha.attention(**args, return_lse=True)
    assert_same_bits(first[0], second[0], "out")
    assert_same_bits(first[1], second[1], "lse")


def assert_each_sequence_alone_matches(kw):
    """Every sequence of the batch ``kw``, run alone, gives the bits it got in the batch."""
    out, lse = run(kw)
    for b in range(len(kw["cache_seqlens"])):
        one_out, one_lse = run(take_sequence(kw, b))
        out_rows, lse_rows = sequence_rows(kw, b)
        assert_same_bits(out[out_rows], one_out, f"out of sequence {b}")
        assert_same_bits(lse[lse_rows], one_lse, f"lse of sequence {b}")


@pytest.mark.parametrize("paged", [False, True])
@pytest.mark.parametrize("varlen", [False, True])
def test_batch_invariant(paged, varlen):
    lengths = dict(seqlens_q=[7, 1, 0, 12], seqlens_kv=[3, 0, 2, 5]) if varlen else dict(
        seqlens_q=9, seqlens_kv=3)
    kw = make_problem(batch=4, **lengths, cache_seqlens=[20, 0, 5, 41], num_heads_q=8,
                      num_heads_kv=2, head_dim=D, varlen=varlen, paged=paged, page_size=6,
                      dtype="float16", causal=True, seed=10)
    assert_each_sequence_alone_matches(kw)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_numpy_and_dpnp_agree_bitwise(dtype):
    kw = ragged(paged=True, page_size=3, dtype=dtype)
    host = run(kw)
    out, lse = fmha.attention(**to_device(kw), return_lse=True)
    assert_same_bits(host[0], to_numpy(out, dtype), "out")
    assert_same_bits(host[1], lse, "lse")


def test_float16_as_uint16_bits_agrees_bitwise():
    kw = ragged(dtype="float16")
    as_bits = {key: (value.view(np.uint16) if key in ("q", "k", "v", "k_cache", "v_cache")
                     else value) for key, value in kw.items()}
    out, lse = run(kw)
    out_bits, lse_bits = fmha.attention(**as_bits, dtype="float16", return_lse=True)
    assert out_bits.dtype == np.uint16
    assert_same_bits(out, out_bits.view(np.float16), "out")
    assert_same_bits(lse, lse_bits, "lse")


def test_non_contiguous_numpy_inputs_agree_bitwise():
    kw = make_problem(batch=2, seqlens_q=5, seqlens_kv=3, cache_seqlens=[4, 7],
                      num_heads_q=4, num_heads_kv=2, head_dim=D, causal=True, seed=11)
    expected = run(kw)
    strided = dict(kw)
    strided["q"] = np.asfortranarray(kw["q"])
    reversed_k = np.ascontiguousarray(kw["k"][:, ::-1])
    strided["k"] = reversed_k[:, ::-1]                       # negative stride, same values
    wide = np.zeros(kw["k_cache"].shape[:-1] + (2 * D,), kw["k_cache"].dtype)
    wide[..., ::2] = kw["k_cache"]
    strided["k_cache"] = wide[..., ::2]
    got = run(strided)
    assert_same_bits(expected[0], got[0], "out")
    assert_same_bits(expected[1], got[1], "lse")


def test_int64_page_table_agrees_bitwise():
    kw = ragged(paged=True, page_size=3)
    expected = run(kw)
    got = run({**kw, "page_table": kw["page_table"].astype(np.int64)})
    assert_same_bits(expected[0], got[0], "out")


def test_default_cache_seqlens_is_the_whole_cache():
    kw = make_problem(batch=2, seqlens_q=3, cache_seqlens=6, cache_padding=0,
                      num_heads_q=2, head_dim=D, causal=True, seed=12)
    expected = run(kw)
    got = run({key: value for key, value in kw.items() if key != "cache_seqlens"})
    assert_same_bits(expected[0], got[0], "out")


# ------------------------------------------------------------------------ empty cases

@pytest.mark.parametrize("config", [
    dict(seqlens_q=[0, 0], seqlens_kv=[0, 3], cache_seqlens=[2, 0]),    # no queries at all
    dict(seqlens_q=[2, 0, 1], seqlens_kv=[0, 0, 0], cache_seqlens=[0, 0, 0]),  # no keys
    dict(seqlens_q=[0, 4, 0], seqlens_kv=None, cache_seqlens=[0, 5, 0]),
    dict(seqlens_q=[], seqlens_kv=[], cache_seqlens=[]),               # empty batch
], ids=["no-queries", "no-keys", "cache-only", "batch-0"])
@pytest.mark.parametrize("paged", [False, True])
def test_empty_sequences_varlen(config, paged):
    kw = make_problem(**config, num_heads_q=4, num_heads_kv=2, head_dim=D, varlen=True,
                      paged=paged, page_size=3, causal=True, seed=13)
    out, lse = run(kw)
    assert out.shape == kw["q"].shape and out.dtype == kw["q"].dtype
    assert lse.shape == (4, kw["q"].shape[0]) and lse.dtype == np.float32
    check_against_reference(kw, out, lse)


@pytest.mark.parametrize("config", [
    dict(batch=2, seqlens_q=0, seqlens_kv=3, cache_seqlens=[1, 2]),
    dict(batch=2, seqlens_q=2, seqlens_kv=0, cache_seqlens=[0, 4]),
    dict(batch=2, seqlens_q=3, seqlens_kv=0),
    dict(batch=0, seqlens_q=2, seqlens_kv=2),
], ids=["Sq=0", "Skv=0", "no-keys", "batch-0"])
def test_empty_dense(config):
    kw = make_problem(**config, num_heads_q=2, head_dim=D, causal=True, seed=14)
    out, lse = run(kw)
    batch, seqlen_q = kw["q"].shape[:2]
    assert out.shape == kw["q"].shape and lse.shape == (batch, 2, seqlen_q)
    check_against_reference(kw, out, lse)


def test_empty_problem_on_device():
    kw = make_problem(seqlens_q=[0, 0], seqlens_kv=[1, 0], num_heads_q=2, head_dim=D,
                      varlen=True, seed=15)
    out, lse = fmha.attention(**to_device(kw), return_lse=True)
    assert tuple(out.shape) == (0, 2, D) and tuple(lse.shape) == (2, 0)
    assert not isinstance(out, np.ndarray)


def test_single_key_single_query():
    kw = make_problem(batch=1, seqlens_q=1, seqlens_kv=1, num_heads_q=1, head_dim=D,
                      causal=True, seed=16)
    out, lse = run(kw)
    np.testing.assert_allclose(out[0, 0, 0], kw["v"][0, 0, 0], rtol=1e-6)
    scale = 1 / math.sqrt(D)
    expected_lse = scale * float(np.dot(kw["q"][0, 0, 0].astype(np.float64),
                                        kw["k"][0, 0, 0].astype(np.float64)))
    assert lse[0, 0, 0] == pytest.approx(expected_lse, abs=1e-5)


@pytest.mark.parametrize("head_dim", [64, 160])
def test_batch_invariant_across_kernels(head_dim):
    """A decode-sized sequence (one query: the decode kernel when alone) batched with a
    long one (the prefill kernel) must give the same bits: the kernel and its key tile
    depend on each sequence's own shape and on D, never on the rest of the batch."""
    kw = make_problem(batch=3, seqlens_q=[1, 40, 2], seqlens_kv=[5, 9, 1],
                      cache_seqlens=[33, 7, 18], num_heads_q=8, num_heads_kv=2,
                      head_dim=head_dim, varlen=True, paged=True, page_size=5,
                      causal=True, seed=11)
    assert_each_sequence_alone_matches(kw)


def test_batch_invariant_with_split_decode():
    """A decode sequence long enough to be split across work-groups (then combined) gets
    the same bits alone as beside short sequences and a prefill-sized one."""
    from fmha.decode import SPLIT_KEYS

    kw = make_problem(batch=3, seqlens_q=[1, 1, 20], seqlens_kv=[1, 2, 3],
                      cache_seqlens=[SPLIT_KEYS + 300, 9, 40], num_heads_q=4,
                      num_heads_kv=2, head_dim=64, varlen=True, paged=True, page_size=16,
                      causal=True, seed=12)
    assert_each_sequence_alone_matches(kw)
