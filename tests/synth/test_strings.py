"""Vectorised string helpers of the simulator (strings.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jingzhun.synth.strings import choose, decode, fixed_width, join, scramble


def test_fixed_width_pads_with_zeros_after_the_prefix() -> None:
    out = fixed_width("u", np.array([7, 42, 0, 9999]), 4)
    assert isinstance(out, pa.StringArray)
    assert out.to_pylist() == ["u0007", "u0042", "u0000", "u9999"]


def test_fixed_width_in_base_16() -> None:
    out = fixed_width("evt_", np.array([0, 10, 255, 2**48 - 1]), 12, base=16)
    assert out.to_pylist() == [
        "evt_000000000000",
        "evt_00000000000a",
        "evt_0000000000ff",
        "evt_ffffffffffff",
    ]


def test_fixed_width_without_prefix_and_across_chunks() -> None:
    values = np.arange(0, 1000, 7)
    out = fixed_width("", values, 5, chunk=16)
    assert out.to_pylist() == [f"{v:05d}" for v in values]
    assert fixed_width("x", np.array([], dtype=np.int64), 3).to_pylist() == []


@given(
    values=st.lists(st.integers(min_value=0, max_value=2**40 - 1), max_size=50),
    prefix=st.text(alphabet="abcxyz_-", max_size=5),
    base=st.sampled_from([10, 16]),
)
@settings(max_examples=60, deadline=None)
def test_fixed_width_matches_python_formatting(values: list[int], prefix: str, base: int) -> None:
    width = 13 if base == 10 else 10  # wide enough for 2**40 - 1 in either base
    out = fixed_width(prefix, np.array(values, dtype=np.uint64), width, base=base, chunk=7)
    spec = f"0{width}d" if base == 10 else f"0{width}x"
    assert out.to_pylist() == [prefix + format(v, spec) for v in values]


@given(
    values=st.lists(
        st.integers(min_value=0, max_value=2**64 - 1), min_size=1, max_size=200, unique=True
    ),
    seed=st.integers(min_value=0, max_value=2**40),
    bits=st.integers(min_value=2, max_value=64),
)
@settings(max_examples=200, deadline=None)
def test_scramble_is_injective_on_its_domain(values: list[int], seed: int, bits: int) -> None:
    x = np.unique(np.array(values, dtype=np.uint64) & np.uint64((1 << bits) - 1))
    y = scramble(x, seed, bits=bits)
    assert y.dtype == np.uint64
    assert len(np.unique(y)) == len(x)  # distinct inputs give distinct outputs
    assert all(int(v) < 2**bits for v in y)


@pytest.mark.parametrize("bits", [2, 3, 8, 13, 16])
@pytest.mark.parametrize("seed", [0, 11, 202, 2**33 + 5])
def test_scramble_permutes_small_domains(bits: int, seed: int) -> None:
    x = np.arange(2**bits, dtype=np.uint64)
    y = scramble(x, seed, bits=bits)
    assert np.array_equal(np.sort(y), x)  # a permutation of [0, 2**bits)


def test_scramble_is_deterministic_and_seeded() -> None:
    x = np.arange(1000)
    a, b, c = scramble(x, 3), scramble(x, 3), scramble(x, 4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, x)  # it does scramble
    assert (a < 2**48).all()


def test_scramble_refuses_one_bit() -> None:
    # With one bit the xorshift step would shift by 0 and zero every value.
    with pytest.raises(ValueError, match="2 to 64 bits"):
        scramble(np.array([0, 1], dtype=np.uint64), 5, bits=1)


def test_choose_maps_indices_and_gives_null_for_minus_one() -> None:
    out = choose(["a", "b", "c"], np.array([2, -1, 0, 1, -1]))
    assert isinstance(out, pa.DictionaryArray)
    assert out.to_pylist() == ["c", None, "a", "b", None]
    assert out.null_count == 2
    assert decode(out).to_pylist() == ["c", None, "a", "b", None]
    assert decode(out).type == pa.string()


def test_choose_with_a_large_pool() -> None:
    pool = [f"s{i}" for i in range(300)]
    idx = np.array([299, 0, -1, 128])
    assert choose(pool, idx).to_pylist() == ["s299", "s0", None, "s128"]


def test_choose_rejects_an_index_past_the_pool() -> None:
    with pytest.raises(pa.ArrowException):
        choose(["a"], np.array([1]))


def test_join_concatenates_arrays_and_literals() -> None:
    a = pa.array(["x", "y"])
    b = choose(["1", "2"], np.array([1, 0]))
    assert join(a, "-", b).to_pylist() == ["x-2", "y-1"]
    assert join(a, b, sep=" ").to_pylist() == ["x 2", "y 1"]
