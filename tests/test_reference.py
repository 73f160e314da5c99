"""Checks of the float64 reference itself, on cases small enough to work out by hand,
and of the problem generator the other tests are built from."""
import math

import ml_dtypes
import numpy as np
import pytest

from tests.problems import make_problem, take_sequence, sequence_rows
from tests.reference import attention_reference, gather_pages


def arr(x):
    return np.array(x, dtype=np.float64)


# --------------------------------------------------------------------- hand-worked cases

def test_one_query_two_keys_known_softmax():
    # Scores 0 and ln 3 -> softmax [1/4, 3/4]; values 10 and 20 -> 17.5; lse = ln(1 + 3).
    q = arr([[[[1.0]]]])                          # [B=1, Sq=1, Hq=1, D=1]
    k = arr([[[[0.0]], [[1.0]]]])                 # [B=1, Skv=2, Hkv=1, D=1]
    v = arr([[[[10.0]], [[20.0]]]])
    out, lse = attention_reference(q, k, v, softmax_scale=math.log(3), return_lse=True)
    assert out.shape == (1, 1, 1, 1) and lse.shape == (1, 1, 1)
    assert out[0, 0, 0, 0] == pytest.approx(17.5, abs=1e-12)
    assert lse[0, 0, 0] == pytest.approx(math.log(4), abs=1e-12)


def test_default_scale_is_one_over_sqrt_head_dim():
    # D = 4: q.k1 = 4, scaled by 1/2 -> scores [0, 2]; weights [1, e^2] / (1 + e^2).
    q = arr(np.ones((1, 1, 1, 4)))
    k = arr(np.stack([np.zeros(4), np.ones(4)]))[None, :, None, :]
    v = arr([0.0, 1.0])[None, :, None, None] * np.ones((1, 2, 1, 4))
    out, lse = attention_reference(q, k, v, return_lse=True)
    e2 = math.exp(2)
    np.testing.assert_allclose(out[0, 0, 0], e2 / (1 + e2), rtol=1e-14)
    assert lse[0, 0, 0] == pytest.approx(math.log(1 + e2), abs=1e-14)


def test_causal_rows_seeing_no_key_are_zero_with_lse_minus_inf():
    # Sq = 3 queries, L = 1 key, bottom-right aligned: query i sees key 0 iff 0 <= i - 2.
    q = arr(np.ones((1, 3, 1, 2)))
    k = arr([[[[0.5, 0.5]]]])
    v = arr([[[[3.0, -4.0]]]])
    out, lse = attention_reference(q, k, v, causal=True, softmax_scale=1.0, return_lse=True)
    np.testing.assert_array_equal(out[0, :2], 0.0)
    np.testing.assert_array_equal(lse[0, 0, :2], -np.inf)
    np.testing.assert_allclose(out[0, 2, 0], [3.0, -4.0])
    assert lse[0, 0, 2] == pytest.approx(1.0)      # one key with score 1: log(e^1)
    assert np.isfinite(out).all()


def test_causal_is_aligned_bottom_right():
    # Sq = 2, L = 3, equal scores: query 0 sees keys {0, 1}, query 1 sees {0, 1, 2}.
    q = arr(np.zeros((1, 2, 1, 1)))
    k = arr(np.zeros((1, 3, 1, 1)))
    v = arr([1.0, 2.0, 6.0])[None, :, None, None]
    out, lse = attention_reference(q, k, v, causal=True, return_lse=True)
    np.testing.assert_allclose(out[0, :, 0, 0], [1.5, 3.0])
    np.testing.assert_allclose(lse[0, 0], [math.log(2), math.log(3)])


def test_cache_comes_before_new_keys():
    # Cache [c0], new [n0, n1], Sq = 2 -> L = 3: query 0 sees {c0, n0}, query 1 all.
    q = arr(np.zeros((1, 2, 1, 1)))
    k_cache = arr(np.zeros((1, 1, 1, 1)))
    v_cache = arr([[[[100.0]]]])
    k = arr(np.zeros((1, 2, 1, 1)))
    v = arr([1.0, 4.0])[None, :, None, None]
    out = attention_reference(q, k, v, k_cache=k_cache, v_cache=v_cache, causal=True)
    np.testing.assert_allclose(out[0, :, 0, 0], [(100 + 1) / 2, (100 + 1 + 4) / 3])


def test_cache_seqlens_limits_the_cache():
    # Slots past cache_seqlens hold NaN and must not be read.
    q = arr(np.zeros((2, 1, 1, 1)))
    k_cache = arr(np.zeros((2, 3, 1, 1)))
    v_cache = arr([[1.0, 3.0, np.nan], [5.0, np.nan, np.nan]])[:, :, None, None]
    out = attention_reference(q, k_cache=k_cache, v_cache=v_cache,
                              cache_seqlens=np.array([2, 1], np.int32))
    np.testing.assert_allclose(out[:, 0, 0, 0], [2.0, 5.0])


def test_default_cache_seqlens_is_the_whole_cache():
    q = arr(np.zeros((1, 1, 1, 1)))
    v_cache = arr([1.0, 2.0, 3.0])[None, :, None, None]
    out = attention_reference(q, k_cache=np.zeros_like(v_cache), v_cache=v_cache)
    assert out[0, 0, 0, 0] == pytest.approx(2.0)


def test_gqa_head_mapping():
    # Hq = 4, Hkv = 2: query heads 0, 1 read KV head 0 and heads 2, 3 read KV head 1.
    q = arr(np.zeros((1, 1, 4, 1)))
    k = arr(np.zeros((1, 1, 2, 1)))
    v = arr([[[[7.0], [9.0]]]])                   # KV head 0 -> 7, head 1 -> 9
    out = attention_reference(q, k, v)
    np.testing.assert_array_equal(out[0, 0, :, 0], [7.0, 7.0, 9.0, 9.0])


def test_mqa_uses_the_single_kv_head_for_every_query_head():
    q = arr(np.arange(3.0)).reshape(1, 1, 3, 1)
    k = arr([[[[1.0]], [[0.0]]]])
    v = arr([[[[1.0]], [[0.0]]]])
    out = attention_reference(q, k, v, softmax_scale=1.0)
    # Head h scores [h, 0] -> weight of key 0 is sigmoid(h).
    np.testing.assert_allclose(out[0, 0, :, 0], 1 / (1 + np.exp(-np.arange(3.0))))


def test_huge_logits_stay_finite():
    q = arr([[[[1.0]]]])
    k = arr([[[[1.0]], [[-1.0]], [[0.999]]]])
    v = arr([[[[1.0]], [[2.0]], [[3.0]]]])
    out, lse = attention_reference(q, k, v, softmax_scale=1e4, return_lse=True)
    # Key 2 trails key 0 by 10 in score: weight e^-10 / (1 + e^-10).
    w = math.exp(-10) / (1 + math.exp(-10))
    assert out[0, 0, 0, 0] == pytest.approx(1 + 2 * w, rel=1e-12)
    assert lse[0, 0, 0] == pytest.approx(1e4 + math.log1p(math.exp(-10)), rel=1e-14)


def test_bfloat16_input_is_computed_in_float64():
    q = np.array([[[[1.0]]]], dtype=ml_dtypes.bfloat16)
    k = np.array([[[[0.0]], [[1.0]]]], dtype=ml_dtypes.bfloat16)
    v = np.array([[[[10.0]], [[20.0]]]], dtype=ml_dtypes.bfloat16)
    out = attention_reference(q, k, v, softmax_scale=math.log(3))
    assert out.dtype == np.float64
    assert out[0, 0, 0, 0] == pytest.approx(17.5, abs=1e-12)


# ------------------------------------------------------------------------------- paging

def test_gather_pages_follows_the_table():
    # page_size 2, pool pages hold tokens [p*10, p*10 + 1]; sequence 0 uses pages 2, 0.
    pool = arr([[0, 1], [10, 11], [20, 21]])[:, :, None, None]   # [3 pages, 2, Hkv=1, D=1]
    page_table = np.array([[2, 0, -1], [1, -1, 99]], np.int32)   # unused entries: junk
    seqs = gather_pages(pool, page_table, np.array([3, 0], np.int32), "NHD")
    assert [s[:, 0, 0].tolist() for s in seqs] == [[20, 21, 0], []]
    assert seqs[1].shape == (0, 1, 1)


def test_gather_pages_hnd_is_nhd_transposed():
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((5, 3, 2, 4))                     # NHD [pages, 3, Hkv, D]
    table = np.array([[4, 1, 0], [2, 3, -1]], np.int32)
    lens = np.array([7, 5], np.int32)
    nhd = gather_pages(pool, table, lens, "NHD")
    hnd = gather_pages(np.ascontiguousarray(pool.transpose(0, 2, 1, 3)), table, lens, "HND")
    for a, b in zip(nhd, hnd):
        np.testing.assert_array_equal(a, b)
    # Token t = 4 of sequence 0: page table[0, 4 // 3] = 1, slot 4 % 3 = 1.
    np.testing.assert_array_equal(nhd[0][4], pool[1, 1])


@pytest.mark.parametrize("entry", [-1, 5])
def test_gather_pages_rejects_used_entries_out_of_range(entry):
    pool = np.zeros((5, 2, 1, 1))
    with pytest.raises(ValueError, match="page_table"):
        gather_pages(pool, np.array([[0, entry]], np.int32), np.array([3], np.int32))


@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
def test_paged_equals_contiguous(kv_layout):
    rng = np.random.default_rng(1)
    batch, cap, hkv, d, page_size = 2, 7, 2, 3, 3
    k_cont = rng.standard_normal((batch, cap, hkv, d))
    v_cont = rng.standard_normal((batch, cap, hkv, d))
    lens = np.array([7, 4], np.int32)
    # Scatter into a shuffled pool: sequence 0 -> pages 5, 0, 3; sequence 1 -> 1, 4.
    table = np.array([[5, 0, 3], [1, 4, -1]], np.int32)
    k_pool = np.full((6, page_size, hkv, d), np.nan)
    v_pool = np.full((6, page_size, hkv, d), np.nan)
    for b in range(batch):
        for t in range(lens[b]):
            k_pool[table[b, t // page_size], t % page_size] = k_cont[b, t]
            v_pool[table[b, t // page_size], t % page_size] = v_cont[b, t]
    q = rng.standard_normal((batch, 2, 4, d))
    if kv_layout == "HND":
        k_cont, v_cont = k_cont.transpose(0, 2, 1, 3), v_cont.transpose(0, 2, 1, 3)
        k_pool, v_pool = k_pool.transpose(0, 2, 1, 3), v_pool.transpose(0, 2, 1, 3)
    dense = attention_reference(q, k_cache=k_cont, v_cache=v_cont, cache_seqlens=lens,
                                kv_layout=kv_layout, causal=True, return_lse=True)
    paged = attention_reference(q, k_cache=k_pool, v_cache=v_pool, cache_seqlens=lens,
                                page_table=table, kv_layout=kv_layout, causal=True,
                                return_lse=True)
    for a, b in zip(dense, paged):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(paged[0]).all()


def test_hnd_contiguous_cache_equals_nhd():
    rng = np.random.default_rng(2)
    q = rng.standard_normal((2, 3, 4, 8))
    k_cache, v_cache = rng.standard_normal((2, 2, 5, 2, 8))    # [B, S_cache, Hkv, D]
    lens = np.array([5, 2], np.int32)
    nhd = attention_reference(q, k_cache=k_cache, v_cache=v_cache, cache_seqlens=lens)
    hnd = attention_reference(q, k_cache=k_cache.transpose(0, 2, 1, 3).copy(),
                              v_cache=v_cache.transpose(0, 2, 1, 3).copy(),
                              cache_seqlens=lens, kv_layout="HND")
    np.testing.assert_array_equal(nhd, hnd)


# ------------------------------------------------------------------------------- varlen

def test_varlen_equals_each_sequence_alone():
    rng = np.random.default_rng(3)
    q_lens, kv_lens = [2, 0, 3], [1, 4, 0]
    q = rng.standard_normal((sum(q_lens), 4, 8))
    k, v = rng.standard_normal((2, sum(kv_lens), 2, 8))
    cu_q = np.cumsum([0] + q_lens).astype(np.int32)
    cu_kv = np.cumsum([0] + kv_lens).astype(np.int32)
    out, lse = attention_reference(q, k, v, cu_seqlens_q=cu_q, cu_seqlens_kv=cu_kv,
                                   causal=True, return_lse=True)
    assert out.shape == q.shape and lse.shape == (4, sum(q_lens))
    for b in range(3):
        qs, ks = slice(cu_q[b], cu_q[b + 1]), slice(cu_kv[b], cu_kv[b + 1])
        o_b, l_b = attention_reference(q[None, qs], k[None, ks], v[None, ks], causal=True,
                                       return_lse=True)
        np.testing.assert_array_equal(out[qs], o_b[0])
        np.testing.assert_array_equal(lse[:, qs], l_b[0])
    # Sequence 2 has queries but no keys at all.
    np.testing.assert_array_equal(out[2:5], 0.0)
    np.testing.assert_array_equal(lse[:, 2:5], -np.inf)


def test_varlen_with_cache_and_no_new_kv():
    rng = np.random.default_rng(4)
    q = rng.standard_normal((3, 1, 4))
    k_cache, v_cache = rng.standard_normal((2, 2, 4, 1, 4))
    out = attention_reference(q, k_cache=k_cache, v_cache=v_cache,
                              cache_seqlens=np.array([4, 1], np.int32),
                              cu_seqlens_q=np.array([0, 1, 3], np.int32))
    dense = attention_reference(q[1:3][None], k_cache=k_cache[1:], v_cache=v_cache[1:],
                                cache_seqlens=np.array([1], np.int32))
    np.testing.assert_array_equal(out[1:3], dense[0])
    # One key: the output is its value for every query.
    np.testing.assert_allclose(out[1:3, 0], np.broadcast_to(v_cache[1, 0, 0], (2, 4)))


def test_all_sequences_empty():
    q = np.zeros((0, 2, 4))
    k = np.zeros((0, 1, 4))
    out, lse = attention_reference(q, k, k, cu_seqlens_q=np.array([0, 0], np.int32),
                                   cu_seqlens_kv=np.array([0, 0], np.int32),
                                   return_lse=True)
    assert out.shape == (0, 2, 4) and lse.shape == (2, 0)


def test_reference_needs_some_keys():
    with pytest.raises(ValueError):
        attention_reference(np.zeros((1, 1, 1, 4)))


# ------------------------------------------------------------------------- make_problem

def test_make_problem_is_deterministic():
    config = dict(seqlens_q=[3, 1], seqlens_kv=[2, 0], cache_seqlens=[5, 9], num_heads_q=4,
                  num_heads_kv=2, head_dim=16, dtype="bfloat16", varlen=True, paged=True,
                  page_size=4, causal=True)
    a, b = make_problem(**config, seed=7), make_problem(**config, seed=7)
    c = make_problem(**config, seed=8)
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):   # bitwise, NaN canaries included
            assert a[key].tobytes() == b[key].tobytes() and a[key].dtype == b[key].dtype
    assert not np.array_equal(a["q"], c["q"])


@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
@pytest.mark.parametrize("paged", [False, True])
def test_make_problem_canaries_sit_only_where_no_one_reads(paged, kv_layout):
    kw = make_problem(batch=3, seqlens_q=2, seqlens_kv=1, cache_seqlens=[5, 0, 3],
                      num_heads_q=2, head_dim=4, paged=paged, page_size=2,
                      kv_layout=kv_layout, spare_pages=2, seed=3)
    pool = kw["k_cache"] if kv_layout == "NHD" else kw["k_cache"].transpose(0, 2, 1, 3)
    gathered = (gather_pages(pool, kw["page_table"], kw["cache_seqlens"]) if paged
                else [pool[b, :n] for b, n in enumerate(kw["cache_seqlens"])])
    assert all(np.isfinite(g).all() for g in gathered)
    nan_slots = np.isnan(pool).all(axis=(2, 3)).sum()
    if paged:
        assert pool.shape[0] == 3 + 0 + 2 + 2         # pages used + spare
        # Spare pages (2 x 2 slots) and the last slot of sequences 0 and 2.
        assert nan_slots == 2 * 2 + 1 + 1
        assert kw["page_table"].shape == (3, 3 + 1)
    else:
        assert pool.shape[1] == 5 + 3
        assert nan_slots == 3 * 8 - (5 + 0 + 3)
    out = attention_reference(**kw)
    assert np.isfinite(out).all()


def test_make_problem_page_table_fill_spare_points_at_nan_pages():
    kw = make_problem(batch=2, seqlens_q=1, cache_seqlens=[3, 1], head_dim=4, paged=True,
                      page_size=2, spare_pages=3, page_table_fill="spare",
                      page_table_padding=2, seed=5)
    table, pool = kw["page_table"], kw["k_cache"]
    unused = [table[0, 2:], table[1, 1:]]
    for entries in unused:
        assert np.isnan(pool[entries]).all()


def test_make_problem_dense_needs_equal_lengths():
    with pytest.raises(ValueError, match="varlen"):
        make_problem(seqlens_q=[1, 2], seqlens_kv=1)


def test_take_sequence_matches_the_batched_rows():
    kw = make_problem(seqlens_q=[2, 3, 0], seqlens_kv=[1, 0, 2], cache_seqlens=[4, 6, 1],
                      num_heads_q=4, num_heads_kv=1, head_dim=8, varlen=True, paged=True,
                      page_size=3, causal=True, seed=11)
    out, lse = attention_reference(**kw, return_lse=True)
    for b in range(3):
        one_out, one_lse = attention_reference(**take_sequence(kw, b), return_lse=True)
        out_rows, lse_rows = sequence_rows(kw, b)
        np.testing.assert_array_equal(out[out_rows], one_out)
        np.testing.assert_array_equal(lse[lse_rows], one_lse)
