"""The 2-D stationary Fokker–Planck solver against closed forms, and the SGD-noise occupation it checks."""

import numpy as np
import pytest
from scipy import stats

from sgd_dynamics.experiments.basin_selection import (
    SGD_ELIMINATION_ALLOWANCE,
    quadrature_occupation,
    sgd_noise_occupation,
    sgd_transverse_temperatures,
    sharp_wide_landscape,
)
from sgd_dynamics.theory.fokker_planck_2d import stationary_law_2d

LANDSCAPE = sharp_wide_landscape()


@pytest.mark.parametrize("temperature", [0.2, 0.5])
def test_isotropic_noise_gives_the_gibbs_occupation(temperature):
    law = stationary_law_2d(LANDSCAPE.potential.gradient, lambda q: np.full(q.shape, temperature),
                            (-2.4, 2.4), (-5.0, 5.0), 100, 100)
    exact = quadrature_occupation(LANDSCAPE, temperature, half_width=6.0, n=1201)
    assert law.probability[law.x < 0].sum() == pytest.approx(exact, abs=1e-4)


def test_anisotropic_constant_noise_gives_the_gaussian_marginals():
    # U = (h_x x^2 + h_y y^2)/2 with D = diag(d_x, d_y): independent OU coordinates, Var = d / h.
    h, d = np.array([2.0, 0.5]), np.array([0.3, 1.2])
    law = stationary_law_2d(lambda q: q * h, lambda q: np.broadcast_to(d, q.shape), (-2.0, 2.0), (-6.0, 6.0),
                            120, 120)
    px, py = law.probability.sum(axis=1), law.probability.sum(axis=0)
    for centres, mass, sd in ((law.x, px, np.sqrt(d[0] / h[0])), (law.y, py, np.sqrt(d[1] / h[1]))):
        cdf = np.cumsum(mass)[:-1]
        edges = (centres[:-1] + centres[1:]) / 2
        np.testing.assert_allclose(cdf, stats.norm.cdf(edges, scale=sd), atol=2e-3)


@pytest.mark.parametrize("temperature", [0.2, 0.5])
def test_sgd_noise_occupation_lies_within_its_stated_allowance(temperature):
    wide_perp, sharp_perp = sgd_transverse_temperatures(LANDSCAPE, temperature)

    def diffusion(q):
        return np.stack([np.full(q.shape[:-1], temperature), np.where(q[..., 0] < 0, wide_perp, sharp_perp)],
                        axis=-1)

    law = stationary_law_2d(LANDSCAPE.potential.gradient, diffusion, (-2.4, 2.4), (-3.5, 3.5), 120, 120)
    exact = law.probability[law.x < 0].sum()
    gap = exact - sgd_noise_occupation(LANDSCAPE, temperature)
    assert 0 < gap < SGD_ELIMINATION_ALLOWANCE
    assert exact < quadrature_occupation(LANDSCAPE, temperature) - 0.1   # far from the isotropic Gibbs law


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"nx": 2}, "nx=2 is invalid"),
    ({"y_range": (1.0, -1.0)}, r"y_range=\(1.0, -1.0\) is invalid"),
    ({"diffusion": lambda q: np.zeros(q.shape)}, "diffusion must be > 0"),
])
def test_invalid_input_names_the_argument(kwargs, message):
    args = dict(gradient=lambda q: q, diffusion=lambda q: np.ones(q.shape), x_range=(-1.0, 1.0),
                y_range=(-1.0, 1.0), nx=8, ny=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        stationary_law_2d(**args)
