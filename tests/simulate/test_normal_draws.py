"""Compiled standard normal draws against NumPy's own ``Generator.standard_normal``: same bits, same state.

NumPy is the independent reference here: the compiled ziggurat is numba's re-implementation, so equality of
every bit over hundreds of thousands of draws (which visit the ziggurat's rare tail and wedge branches) for
each bit generator is what says the streams agree.
"""

from __future__ import annotations

import numpy as np
import pytest

from sgd_dynamics.simulate.normal_draws import fill_standard_normal

BIT_GENERATORS = [np.random.PCG64, np.random.PCG64DXSM, np.random.SFC64, np.random.MT19937, np.random.Philox]


@pytest.mark.parametrize("bit_generator", BIT_GENERATORS, ids=lambda b: b.__name__)
@pytest.mark.parametrize("scale", [1.0, 0.037])
def test_compiled_draws_are_numpys_bits_and_leave_the_same_state(bit_generator, scale):
    ours, ref = np.random.Generator(bit_generator(11)), np.random.Generator(bit_generator(11))
    out = fill_standard_normal(ours, np.empty((3, 100_000)), scale)
    expected = scale * ref.standard_normal((3, 100_000))
    assert np.array_equal(out, expected)
    assert np.abs(out / scale).max() > 4  # the tail branch of the ziggurat was taken
    # the generator continues where NumPy's would: the compiled kernel advanced the shared state
    assert np.array_equal(ours.standard_normal(5), ref.standard_normal(5))
    assert same_state(ours.bit_generator.state, ref.bit_generator.state)


def same_state(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    return np.array_equal(a, b)


@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (2, 3, 5)])
@pytest.mark.parametrize("compiled", [True, False])
def test_every_shape_is_filled_in_numpys_order(shape, compiled):
    out = fill_standard_normal(np.random.default_rng(4), np.full(shape, np.nan), 2.5, compiled=compiled)
    assert out.shape == shape
    assert np.array_equal(out, 2.5 * np.random.default_rng(4).standard_normal(shape))


def test_an_output_it_cannot_fill_in_place_is_refused():
    with pytest.raises(ValueError, match="C-contiguous float64"):
        fill_standard_normal(np.random.default_rng(0), np.empty((4, 4))[:, ::2])
    with pytest.raises(ValueError, match="dtype float32"):
        fill_standard_normal(np.random.default_rng(0), np.empty(4, dtype=np.float32))
