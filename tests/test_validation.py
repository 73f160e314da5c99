"""One test per argument rule of ``fmha.attention``.

Every test runs twice: through ``fmha.attention`` (which must validate before doing
anything else) and through ``fmha.validation.check_arguments`` directly. Each asserts
the exception type and that the message starts with the offending argument's name.
"""
import math

import ml_dtypes
import numpy as np
import pytest

import fmha  # noqa: F401  (configures the SYCL runtime before dpnp / dpctl load)
from fmha.validation import MAX_HEAD_DIM, Problem, check_arguments
from tests.problems import make_problem, to_device

HEAD_DIM = 16          # one of FAST_HEAD_DIMS: the positive cases reuse compiled kernels


def _check_arguments(q, k=None, v=None, *, k_cache=None, v_cache=None, cache_seqlens=None,
                     page_table=None, kv_layout="NHD", cu_seqlens_q=None,
                     cu_seqlens_kv=None, causal=False, softmax_scale=None,
                     return_lse=False, out=None, dtype=None):
    """``check_arguments`` behind the signature of ``fmha.attention``."""
    return check_arguments(q, k, v, k_cache, v_cache, cache_seqlens, page_table,
                           kv_layout, cu_seqlens_q, cu_seqlens_kv, causal, softmax_scale,
                           return_lse, out, dtype)


@pytest.fixture(params=["attention", "check_arguments"])
def call(request):
    """The entry point under test, called like ``fmha.attention``."""
    return fmha.attention if request.param == "attention" else _check_arguments


def dense(**overrides):
    """B=2, Sq=3, Skv=2, contiguous cache of lengths [4, 1], Hq=4, Hkv=2."""
    config = dict(batch=2, seqlens_q=3, seqlens_kv=2, cache_seqlens=[4, 1], num_heads_q=4,
                  num_heads_kv=2, head_dim=HEAD_DIM, seed=0)
    return make_problem(**{**config, **overrides})


def varlen(**overrides):
    """Packed q lengths [3, 0, 2], new KV [1, 2, 0], contiguous cache [4, 1, 0]."""
    config = dict(seqlens_q=[3, 0, 2], seqlens_kv=[1, 2, 0], cache_seqlens=[4, 1, 0],
                  num_heads_q=4, num_heads_kv=2, head_dim=HEAD_DIM, varlen=True, seed=1)
    return make_problem(**{**config, **overrides})


def paged(**overrides):
    """B=2, paged cache of lengths [5, 7], page_size 3 -> 2 + 3 used pages, 2 spare."""
    config = dict(batch=2, seqlens_q=2, seqlens_kv=1, cache_seqlens=[5, 7], num_heads_q=4,
                  num_heads_kv=2, head_dim=HEAD_DIM, paged=True, page_size=3,
                  spare_pages=2, page_table_padding=1, seed=2)
    return make_problem(**{**config, **overrides})


def raises(exc, name, detail=""):
    """``pytest.raises`` for a message that starts with ``name:`` (and contains ``detail``)."""
    return pytest.raises(exc, match=rf"^{name}: .*{detail}")


# ------------------------------------------------------------------------ valid inputs

@pytest.mark.parametrize("make", [dense, varlen, paged])
def test_valid_problems_pass(call, make):
    call(**make())


def test_problem_summary_dense():
    p = _check_arguments(**dense(causal=True))
    assert isinstance(p, Problem)
    assert (p.batch, p.num_heads_q, p.num_heads_kv, p.head_dim) == (2, 4, 2, HEAD_DIM)
    assert (p.dtype, p.storage_dtype, p.kind, p.varlen, p.paged) == (
        "float32", "float32", "numpy", False, False)
    assert p.seqlens_q.tolist() == [3, 3] and p.seqlens_kv_new.tolist() == [2, 2]
    assert p.cache_seqlens.tolist() == [4, 1] and p.seqlens_kv.tolist() == [6, 3]
    assert p.softmax_scale == pytest.approx(1 / math.sqrt(HEAD_DIM))
    assert p.causal and p.group_size == 2 and p.cache_capacity == 4 + 3
    assert p.seqlens_q.dtype == np.int64 and not p.seqlens_q.flags.writeable


def test_problem_summary_varlen_paged():
    kw = paged(varlen=True, seqlens_q=[2, 0], seqlens_kv=[0, 3], kv_layout="HND",
               softmax_scale=0.5)
    p = _check_arguments(**kw)
    assert p.varlen and p.paged and p.kv_layout == "HND"
    assert p.seqlens_q.tolist() == [2, 0] and p.seqlens_kv_new.tolist() == [0, 3]
    assert p.cache_seqlens.tolist() == [5, 7]
    assert (p.page_size, p.num_pages, p.max_pages_per_seq) == (3, 2 + 3 + 2, 3 + 1)
    assert p.softmax_scale == 0.5 and p.total_q == 2 and p.max_seqlen_kv == 10


def test_problem_default_cache_seqlens_is_the_whole_cache():
    kw = dense()
    del kw["cache_seqlens"]
    p = _check_arguments(**kw)
    assert p.cache_seqlens.tolist() == [kw["k_cache"].shape[1]] * 2


def test_problem_without_cache_or_without_new_kv():
    p = _check_arguments(**dense(cache_seqlens=None))
    assert not p.has_cache and p.cache_seqlens.tolist() == [0, 0] and p.page_size is None
    p = _check_arguments(**varlen(seqlens_kv=None))
    assert not p.has_new_kv and p.seqlens_kv_new.tolist() == [0, 0, 0]


def test_head_dim_limits_are_accepted(call):
    for head_dim in (1, MAX_HEAD_DIM):
        call(**dense(head_dim=head_dim, batch=1, seqlens_q=1, seqlens_kv=1,
                     cache_seqlens=None))


def test_empty_batch_is_accepted():
    p = _check_arguments(**varlen(seqlens_q=[], seqlens_kv=[], cache_seqlens=None))
    assert p.batch == 0 and p.total_q == 0


# ------------------------------------------------------------------- types and kinds

def test_q_not_an_array(call):
    kw = dense()
    with raises(TypeError, "q", "numpy.ndarray"):
        call(**{**kw, "q": kw["q"].tolist()})


@pytest.mark.parametrize("name", ["k", "v_cache", "cache_seqlens"])
def test_other_argument_not_an_array(call, name):
    kw = dense()
    with raises(TypeError, name, "numpy.ndarray"):
        call(**{**kw, name: kw[name].tolist()})


@pytest.mark.parametrize("name", ["k", "k_cache", "cache_seqlens"])
def test_mixed_numpy_and_dpnp(call, name):
    kw = dense()
    mixed = {**kw, name: to_device(kw)[name]}
    with raises(TypeError, name, "one kind"):
        call(**mixed)


def test_mixed_dpnp_and_numpy_metadata(call):
    kw = varlen()
    device = {**to_device(kw), "cu_seqlens_q": kw["cu_seqlens_q"]}
    with raises(TypeError, "cu_seqlens_q", "one kind"):
        call(**device)


def test_dpnp_arrays_on_different_queues(call):
    import dpctl

    kw = paged()
    device = to_device(kw)
    device["page_table"] = to_device({"t": kw["page_table"]}, queue=dpctl.SyclQueue())["t"]
    with raises(ValueError, "page_table", "queue"):
        call(**device)


def test_usm_arrays_must_be_contiguous(call):
    import dpnp

    kw = to_device(dense())
    kw["q"] = dpnp.flip(dpnp.empty((2, 3, 4, 2 * HEAD_DIM), dtype=dpnp.float32)[..., ::2],
                        axis=1)
    with raises(ValueError, "q", "C-contiguous"):
        call(**kw)


def test_valid_usm_problem_passes():
    p = _check_arguments(**to_device(paged(dtype="bfloat16")))
    assert (p.kind, p.dtype, p.storage_dtype) == ("usm", "bfloat16", "uint16")
    assert p.queue is not None


def test_numpy_non_contiguous_and_negative_strides_are_accepted(call):
    kw = dense()
    kw["q"] = np.asfortranarray(kw["q"])
    kw["k"] = kw["k"][:, ::-1]
    kw["k_cache"] = np.concatenate([kw["k_cache"]] * 2, axis=-1)[..., ::2]
    assert not kw["k_cache"].flags.c_contiguous and kw["k"].strides[1] < 0
    call(**kw)


@pytest.mark.parametrize("name, value", [("causal", 1), ("causal", "yes"),
                                         ("return_lse", None)])
def test_flags_must_be_bool(call, name, value):
    with raises(TypeError, name, "bool"):
        call(**{**dense(), name: value})


# ------------------------------------------------------------------------------ dtypes

@pytest.mark.parametrize("bad", [np.float64, np.int32, np.bool_, np.complex64])
def test_q_dtype_unsupported(call, bad):
    kw = dense()
    with raises(TypeError, "q", f"got {np.dtype(bad).name}"):
        call(**{**kw, "q": kw["q"].astype(bad)})


@pytest.mark.parametrize("name", ["k", "v", "k_cache", "v_cache"])
def test_mixed_dtypes(call, name):
    kw = dense()
    with raises(TypeError, name, "expected dtype float32 .*got float16"):
        call(**{**kw, name: kw[name].astype(np.float16)})


def test_bfloat16_and_float32_mixed(call):
    kw = dense(dtype="bfloat16")
    with raises(TypeError, "v", "bfloat16"):
        call(**{**kw, "v": kw["v"].astype(np.float32)})


def _as_uint16(kw):
    return {key: (value.view(np.uint16) if isinstance(value, np.ndarray)
                  and value.dtype.itemsize == 2 else value) for key, value in kw.items()}


def test_uint16_without_dtype(call):
    with raises(ValueError, "dtype", "got None"):
        call(**_as_uint16(dense(dtype="bfloat16")))


def test_dtype_given_for_non_uint16_arrays(call):
    with raises(ValueError, "dtype", "expected None for float32"):
        call(**dense(), dtype="bfloat16")


@pytest.mark.parametrize("bad", ["float32", "int16", "bf16"])
def test_dtype_not_bfloat16_or_float16(call, bad):
    with raises(ValueError, "dtype", "'bfloat16' or 'float16'"):
        call(**_as_uint16(dense(dtype="float16")), dtype=bad)


@pytest.mark.parametrize("dtype", ["bfloat16", ml_dtypes.bfloat16, np.dtype(ml_dtypes.bfloat16)])
def test_uint16_with_dtype_is_accepted(dtype):
    p = _check_arguments(**_as_uint16(dense(dtype="bfloat16")), dtype=dtype)
    assert (p.dtype, p.storage_dtype) == ("bfloat16", "uint16")


def test_uint16_float16_through_attention(call):
    call(**_as_uint16(dense(dtype="float16")), dtype="float16")


# ---------------------------------------------------------------- ranks and shapes

@pytest.mark.parametrize("shape", [(4, HEAD_DIM), (1, 2, 3, 4, HEAD_DIM)])
def test_q_wrong_rank(call, shape):
    kw = dense()
    with raises(ValueError, "q", "4-D"):
        call(**{**kw, "q": np.zeros(shape, np.float32)})


def test_q_3d_without_cu_seqlens_q(call):
    kw = varlen()
    del kw["cu_seqlens_q"]
    with raises(ValueError, "q", "without cu_seqlens_q"):
        call(**kw)


def test_q_4d_with_cu_seqlens_q(call):
    with raises(ValueError, "cu_seqlens_q", "dense"):
        call(**dense(), cu_seqlens_q=np.array([0, 3, 6], np.int32))


def test_k_wrong_rank_dense(call):
    kw = dense()
    with raises(ValueError, "k", "4-D"):
        call(**{**kw, "k": kw["k"][0], "v": kw["v"][0]})


def test_k_wrong_rank_varlen(call):
    kw = varlen(seqlens_kv=1)
    with raises(ValueError, "k", "3-D"):
        call(**{**kw, "k": kw["k"][None], "v": kw["v"][None]})


def test_v_shape_differs_from_k(call):
    kw = dense()
    with raises(ValueError, "v", "shape of k"):
        call(**{**kw, "v": kw["v"][:, :1]})


def test_v_cache_shape_differs_from_k_cache(call):
    kw = paged()
    with raises(ValueError, "v_cache", "shape of k_cache"):
        call(**{**kw, "v_cache": kw["v_cache"][:-1]})


def test_cache_wrong_rank(call):
    kw = dense()
    with raises(ValueError, "k_cache", "4-D"):
        call(**{**kw, "k_cache": kw["k_cache"][0], "v_cache": kw["v_cache"][0]})


def test_heads_not_a_multiple(call):
    kw = dense(num_heads_q=3, num_heads_kv=1)
    k = np.zeros((2, 2, 2, HEAD_DIM), np.float32)
    cache = np.zeros((2, 7, 2, HEAD_DIM), np.float32)
    with raises(ValueError, "q", "multiple of Hkv=2"):
        call(**{**kw, "k": k, "v": k, "k_cache": cache, "v_cache": cache})


def test_kv_heads_differ_between_new_kv_and_cache(call):
    kw = dense(num_heads_kv=2)
    cache = np.zeros((2, 7, 1, HEAD_DIM), np.float32)
    with raises(ValueError, "k_cache", "Hkv=2"):
        call(**{**kw, "k_cache": cache, "v_cache": cache})


def test_zero_kv_heads(call):
    kw = dense(cache_seqlens=None)
    k = np.zeros((2, 2, 0, HEAD_DIM), np.float32)
    with raises(ValueError, "k", "KV head"):
        call(**{**kw, "k": k, "v": k})


def test_zero_q_heads(call):
    kw = dense()
    with raises(ValueError, "q", "Hq=0"):
        call(**{**kw, "q": np.zeros((2, 3, 0, HEAD_DIM), np.float32)})


@pytest.mark.parametrize("head_dim", [0, MAX_HEAD_DIM + 1, 512])
def test_head_dim_unsupported(call, head_dim):
    kw = dense(cache_seqlens=None)
    q = np.zeros((2, 3, 4, head_dim), np.float32)
    k = np.zeros((2, 2, 2, head_dim), np.float32)
    with raises(ValueError, "q", f"D in \\[1, {MAX_HEAD_DIM}\\], got {head_dim}"):
        call(**{**kw, "q": q, "k": k, "v": k})


def test_head_dim_differs_between_q_and_k(call):
    kw = dense()
    k = np.zeros((2, 2, 2, HEAD_DIM * 2), np.float32)
    with raises(ValueError, "k", f"D={HEAD_DIM}"):
        call(**{**kw, "k": k, "v": k})


@pytest.mark.parametrize("make", [dense, paged])
def test_head_dim_differs_between_q_and_cache(call, make):
    kw = make()
    cache = kw["k_cache"][..., :HEAD_DIM // 2]
    with raises(ValueError, "k_cache", f"D={HEAD_DIM}"):
        call(**{**kw, "k_cache": cache, "v_cache": cache})


# ------------------------------------------------------------------ missing arguments

def test_k_without_v(call):
    kw = dense()
    del kw["v"]
    with raises(ValueError, "v", "with k"):
        call(**kw)


def test_v_without_k(call):
    kw = dense()
    del kw["k"]
    with raises(ValueError, "k", "with v"):
        call(**kw)


def test_k_cache_without_v_cache(call):
    kw = dense()
    del kw["v_cache"]
    with raises(ValueError, "v_cache", "with k_cache"):
        call(**kw)


def test_v_cache_without_k_cache(call):
    kw = paged()
    del kw["k_cache"]
    with raises(ValueError, "k_cache", "with v_cache"):
        call(**kw)


def test_no_keys_at_all(call):
    with raises(ValueError, "k", "neither"):
        call(dense()["q"])


def test_page_table_without_cache(call):
    kw = paged()
    for name in ("k_cache", "v_cache", "cache_seqlens"):
        del kw[name]
    with raises(ValueError, "page_table", "k_cache=None"):
        call(**kw)


def test_page_table_without_cache_seqlens(call):
    kw = paged()
    del kw["cache_seqlens"]
    with raises(ValueError, "cache_seqlens", "with page_table"):
        call(**kw)


def test_cache_seqlens_without_cache(call):
    kw = dense(cache_seqlens=None)
    with raises(ValueError, "cache_seqlens", "k_cache=None"):
        call(**kw, cache_seqlens=np.array([1, 1], np.int32))


def test_cu_seqlens_kv_without_k(call):
    kw = varlen(seqlens_kv=None)
    with raises(ValueError, "cu_seqlens_kv", "k=None"):
        call(**kw, cu_seqlens_kv=np.array([0, 1, 1, 1], np.int32))


def test_varlen_q_with_k_needs_cu_seqlens_kv(call):
    kw = varlen()
    del kw["cu_seqlens_kv"]
    with raises(ValueError, "cu_seqlens_kv", "got None"):
        call(**kw)


def test_dense_q_with_cu_seqlens_kv(call):
    with raises(ValueError, "cu_seqlens_kv", "varlen"):
        call(**dense(), cu_seqlens_kv=np.array([0, 2, 4], np.int32))


# ----------------------------------------------------------------------- page_table

@pytest.mark.parametrize("bad", [np.float32, np.uint32, np.int16])
def test_page_table_not_int32_or_int64(call, bad):
    kw = paged()
    with raises(TypeError, "page_table", f"int32 .*got {np.dtype(bad).name}"):
        call(**{**kw, "page_table": kw["page_table"].astype(bad)})


def test_page_table_wrong_rank(call):
    kw = paged()
    with raises(ValueError, "page_table", "2-D"):
        call(**{**kw, "page_table": kw["page_table"].ravel()})


def test_page_table_batch_mismatch(call):
    kw = paged()
    with raises(ValueError, "page_table", "B=2"):
        call(**{**kw, "page_table": kw["page_table"][:1]})


@pytest.mark.parametrize("value", [15, -1])
def test_page_table_used_entry_out_of_range(call, value):
    kw = paged()
    kw["page_table"][1, 2] = value        # sequence 1 (7 tokens) uses entries 0, 1, 2
    with raises(ValueError, "page_table",
                rf"in \[0, num_pages=7\).*got {value} at \[1, 2\]"):
        call(**kw)


def test_page_table_unused_entries_are_not_checked(call):
    kw = paged(page_table_padding=3)
    kw["page_table"][0, 2:] = [-7, 10**6, -1, 99]   # sequence 0 (5 tokens) uses 0, 1
    kw["page_table"][1, 3:] = 2**31 - 1
    call(**kw)


def test_page_table_int64_is_accepted(call):
    kw = paged()
    call(**{**kw, "page_table": kw["page_table"].astype(np.int64)})


def test_page_size_zero(call):
    kw = paged(cache_seqlens=[0, 0])
    pool = np.zeros((4, 0, 2, HEAD_DIM), np.float32)
    with raises(ValueError, "k_cache", "page_size >= 1"):
        call(**{**kw, "k_cache": pool, "v_cache": pool})


# -------------------------------------------------------------------- cache_seqlens

def test_cache_seqlens_negative(call):
    kw = dense()
    kw["cache_seqlens"][1] = -1
    with raises(ValueError, "cache_seqlens", r"got -1 at \[1\]"):
        call(**kw)


def test_cache_seqlens_beyond_contiguous_capacity(call):
    kw = dense()                                  # S_cache = 4 + 3 slots of padding
    kw["cache_seqlens"][0] = 8
    with raises(ValueError, "cache_seqlens", r"\[0, 7\] \(S_cache=7\), got 8 at \[0\]"):
        call(**kw)


def test_cache_seqlens_beyond_paged_capacity(call):
    kw = paged()                                  # 4 table columns x page_size 3
    kw["cache_seqlens"][1] = 13
    with raises(ValueError, "cache_seqlens", r"\[0, 12\].*page_size=3\), got 13 at \[1\]"):
        call(**kw)


def test_cache_seqlens_at_capacity_is_accepted():
    kw = paged()
    kw["cache_seqlens"][:] = 12
    kw["page_table"][:] = np.arange(4)            # every column used: must be valid
    p = _check_arguments(**kw)
    assert p.cache_seqlens.tolist() == [12, 12]


def test_cache_seqlens_wrong_dtype(call):
    kw = dense()
    with raises(TypeError, "cache_seqlens", "int32"):
        call(**{**kw, "cache_seqlens": kw["cache_seqlens"].astype(np.int64)})


def test_cache_seqlens_wrong_length(call):
    kw = dense()
    with raises(ValueError, "cache_seqlens", "B=2"):
        call(**{**kw, "cache_seqlens": np.array([1, 1, 1], np.int32)})


# ---------------------------------------------------------------------- cu_seqlens

@pytest.mark.parametrize("name", ["cu_seqlens_q", "cu_seqlens_kv"])
def test_cu_seqlens_not_starting_at_zero(call, name):
    kw = varlen()
    kw[name] = kw[name] + 1
    with raises(ValueError, name, r"\[0\] == 0, got 1"):
        call(**kw)


@pytest.mark.parametrize("name", ["cu_seqlens_q", "cu_seqlens_kv"])
def test_cu_seqlens_not_monotone(call, name):
    kw = varlen()
    cu = kw[name]
    cu[1] = cu[-1] + 1                            # up past the end, then back down
    with raises(ValueError, name, "non-decreasing"):
        call(**kw)


@pytest.mark.parametrize("name, rows", [("cu_seqlens_q", "total_q"),
                                        ("cu_seqlens_kv", "total_kv")])
def test_cu_seqlens_last_entry_is_not_the_row_count(call, name, rows):
    kw = varlen()
    kw[name][-1] += 1                             # one row more than there are
    with raises(ValueError, name, rows):
        call(**kw)


def test_cu_seqlens_kv_length_differs_from_cu_seqlens_q(call):
    kw = varlen(seqlens_kv=[1, 2, 0])
    kw["cu_seqlens_kv"] = np.array([0, 1, 3], np.int32)
    with raises(ValueError, "cu_seqlens_kv", "B \\+ 1 = 4"):
        call(**kw)


def test_cu_seqlens_q_length_differs_from_batch(call):
    kw = varlen()                                 # the cache has B = 3 rows
    kw["cu_seqlens_q"] = np.array([0, 5], np.int32)
    kw["cu_seqlens_kv"] = np.array([0, 3], np.int32)
    with raises(ValueError, "k_cache", "B=1"):
        call(**kw)


def test_cu_seqlens_empty(call):
    kw = varlen(seqlens_kv=None)
    with raises(ValueError, "cu_seqlens_q", "length"):
        call(**{**kw, "cu_seqlens_q": np.zeros(0, np.int32)})


def test_cu_seqlens_wrong_dtype(call):
    kw = varlen()
    with raises(TypeError, "cu_seqlens_q", "int32"):
        call(**{**kw, "cu_seqlens_q": kw["cu_seqlens_q"].astype(np.int64)})


def test_cu_seqlens_wrong_rank(call):
    kw = varlen()
    with raises(ValueError, "cu_seqlens_kv", "1-D"):
        call(**{**kw, "cu_seqlens_kv": kw["cu_seqlens_kv"][None]})


# ------------------------------------------------------------------- batch mismatches

def test_batch_mismatch_q_and_k(call):
    kw = dense()
    with raises(ValueError, "k", "B=2"):
        call(**{**kw, "k": kw["k"][:1], "v": kw["v"][:1]})


@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
def test_batch_mismatch_q_and_cache(call, kv_layout):
    kw = dense(kv_layout=kv_layout)
    with raises(ValueError, "k_cache", "B=2"):
        call(**{**kw, "k_cache": kw["k_cache"][:1], "v_cache": kw["v_cache"][:1]})


def test_hnd_cache_is_read_as_hnd(call):
    kw = dense(kv_layout="HND")                   # k_cache [B, Hkv, S_cache, D]
    with raises(ValueError, "k_cache", "Hkv=2"):
        call(**{**kw, "kv_layout": "NHD"})


# ---------------------------------------------------------------------- softmax_scale

@pytest.mark.parametrize("scale", [0.0, -0.125, math.inf, -math.inf, math.nan])
def test_softmax_scale_not_finite_positive(call, scale):
    with raises(ValueError, "softmax_scale", "finite number > 0"):
        call(**dense(), softmax_scale=scale)


@pytest.mark.parametrize("scale", ["0.1", True, np.array([0.1])])
def test_softmax_scale_not_a_number(call, scale):
    with raises(TypeError, "softmax_scale", "real number"):
        call(**dense(), softmax_scale=scale)


def test_softmax_scale_numpy_scalar_is_accepted():
    p = _check_arguments(**dense(), softmax_scale=np.float32(0.25))
    assert p.softmax_scale == 0.25 and type(p.softmax_scale) is float


# ------------------------------------------------------------------------------- out

def test_out_wrong_shape(call):
    kw = dense()
    with raises(ValueError, "out", "shape of q"):
        call(**kw, out=np.empty((2, 3, 4, HEAD_DIM + 1), np.float32))


def test_out_wrong_dtype(call):
    kw = dense()
    with raises(TypeError, "out", "float32 .*got float16"):
        call(**kw, out=np.empty(kw["q"].shape, np.float16))


def test_out_wrong_kind(call):
    kw = dense()
    out = to_device({"out": np.empty(kw["q"].shape, np.float32)})["out"]
    with raises(TypeError, "out", "one kind"):
        call(**kw, out=out)


def test_out_not_contiguous(call):
    kw = dense()
    out = np.empty(kw["q"].shape[:-1] + (2 * HEAD_DIM,), np.float32)[..., ::2]
    with raises(ValueError, "out", "C-contiguous"):
        call(**kw, out=out)


def test_out_read_only(call):
    kw = dense()
    out = np.empty(kw["q"].shape, np.float32)
    out.setflags(write=False)
    with raises(ValueError, "out", "writable"):
        call(**kw, out=out)


@pytest.mark.parametrize("name", ["q", "k_cache"])
def test_out_overlaps_an_input(call, name):
    kw = dense()
    size = kw["q"].size
    if name == "q":
        out = kw["q"]
    else:
        out = kw["k_cache"].reshape(-1)[:size].reshape(kw["q"].shape)
    with raises(ValueError, "out", f"overlapping {name}"):
        call(**kw, out=out)


def test_usm_out_overlaps_an_input(call):
    kw = to_device(dense())
    with raises(ValueError, "out", "overlapping q"):
        call(**kw, out=kw["q"])


def test_usm_out_wrong_queue(call):
    import dpctl
    import dpnp

    kw = to_device(dense())
    out = dpnp.empty(kw["q"].shape, dtype=dpnp.float32, sycl_queue=dpctl.SyclQueue())
    with raises(ValueError, "out", "queue"):
        call(**kw, out=out)


# ------------------------------------------------------------------------- kv_layout

@pytest.mark.parametrize("layout", ["nhd", "NDH", "", None, 0])
def test_kv_layout_unknown(call, layout):
    with raises(ValueError, "kv_layout", "'NHD' or 'HND'"):
        call(**{**dense(), "kv_layout": layout})
