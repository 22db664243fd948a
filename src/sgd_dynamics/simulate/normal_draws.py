"""Blocks of standard normal draws from a NumPy ``Generator``, compiled: the same numbers, about 2x sooner.

The simulators draw their noise ``xi_k ~ N(0, I)`` from ``numpy.random.Generator.standard_normal``. On
the benchmark machine its ziggurat costs about 16 ns a draw, three quarters of an Euler-Maruyama step at
10^4 replicas (issue 15 goal 6). numba compiles the same ziggurat against the same bit generator (its
``Generator`` support reads and advances the generator's own state), 7 ns a draw: the numbers, their order
and the generator's state afterwards are exactly those of ``rng.standard_normal(out.shape)``, for every
NumPy bit generator (tested bit for bit in ``tests/simulate/test_normal_draws.py``).

Loading the compiled kernel costs a few tenths of a second once per process, so a simulation that draws
fewer than :data:`COMPILED_MIN_DRAWS` numbers in all passes ``compiled=False`` and stays with NumPy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

# Below this many draws in a whole simulation NumPy's own draws are sooner than loading the kernel
# (2^20 draws: 16 ms in NumPy, 7 ms compiled, 0.4 s for the first load in a process).
COMPILED_MIN_DRAWS = 1 << 20


def fill_standard_normal(rng: np.random.Generator, out: NDArray[np.float64], scale: float = 1.0, *,
                         compiled: bool = True) -> NDArray[np.float64]:
    """``out[...] = scale * rng.standard_normal(out.shape)``, bit for bit, in place; returns ``out``.

    ``out`` must be C-contiguous float64. ``compiled=False`` uses NumPy (the reference the compiled path
    is tested against; the caller passes ``False`` for small simulations).
    """
    if not (out.dtype == np.float64 and out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous float64 array; got dtype {out.dtype}, "
                         f"c_contiguous={out.flags.c_contiguous}")
    if compiled:
        _compiled_fill()(rng, out.reshape(-1), float(scale))
        return out
    rng.standard_normal(out=out)
    if scale != 1.0:
        out *= scale  # the same product, element by element, as the compiled kernel's
    return out


@functools.cache
def _compiled_fill() -> Callable[[np.random.Generator, NDArray[np.float64], float], None]:
    import numba  # a hard dependency, imported here so that importing the simulators stays light

    @numba.njit(nogil=True, cache=True)
    def fill(rng, flat, scale):
        for i in range(flat.size):
            flat[i] = scale * rng.standard_normal()  # 1.0 * z is z exactly

    return fill
