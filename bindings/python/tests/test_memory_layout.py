"""Activations in any memory layout give the result of the same values in C order: a
Fortran-ordered array (``np.asfortranarray``, ``np.load`` of a file saved from ``acts.T``, a
transposed torch tensor's ``.numpy()``) or a strided view is copied into C order before the
engine reads its rows."""

import numpy as np
import pytest

from conftest import assert_same, build, random_corpus


def layouts(acts):
    """``acts`` ([B, L, F], C order) in other layouts, equal values."""
    # What np.save(path, x.T) of a C-order x = acts.T writes, read back: Fortran order.
    yield "asfortranarray", np.asfortranarray(acts)
    yield "transposed", np.ascontiguousarray(acts.transpose(2, 1, 0)).transpose(2, 1, 0)
    # Neither C nor Fortran contiguous.
    yield "strided", np.repeat(acts, 2, axis=2)[:, :, ::2]


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_fortran_ordered_and_strided_activations_give_the_c_order_result(dtype):
    acts, tokens = random_corpus(seed=5, n_seq=6, seq_len=17, n_features=11, density=0.25)
    acts = acts.astype(dtype)
    n_features = acts.shape[2]

    def per_sequence(seqs):
        d = build(acts[:0], [], n_features=n_features)
        fired = sum(d.process(s, t) for s, t in zip(seqs, tokens))
        return fired, d.features.to_dict()

    batch_ref = build(acts, tokens).features.to_dict()
    list_ref = build(list(acts), tokens, n_features=n_features).features.to_dict()
    seq_fired, seq_ref = per_sequence(list(acts))
    assert seq_fired > 0
    assert batch_ref["total_tokens_processed"] == acts.shape[0] * acts.shape[1]
    for name, x in layouts(acts):
        assert not x.flags.c_contiguous, name
        assert np.array_equal(x, acts) and x.dtype == acts.dtype, name
        # A [B, L, F] batch, and a list of [L, F] sequences (views into x: not C-contiguous).
        assert_same(build(x, tokens).features.to_dict(), batch_ref, name, rel=0)
        assert_same(build(list(x), tokens, n_features=n_features).features.to_dict(), list_ref, name, rel=0)
        # One [L, F] sequence at a time, each Fortran-ordered (a C-order [F, L] transposed).
        seqs = [np.ascontiguousarray(s.T).T for s in x]
        assert all(s.flags.f_contiguous and not s.flags.c_contiguous for s in seqs)
        fired, got = per_sequence(seqs)
        assert fired == seq_fired, name
        assert_same(got, seq_ref, name, rel=0)
