"""The FFT mean-frequency estimator on simulated AR(2) modes: bias against the exact spectrum, error bar."""

import numpy as np
import pytest

from sgd_dynamics.estimation import oscillation_spectrum
from sgd_dynamics.hyper import Hyperparams
from sgd_dynamics.simulate import ar2_frequency_spread, ar2_paths
from sgd_dynamics.theory import ar2_mean_frequency

# the demo's default point (lr 0.0025, momentum 0.9, weight decay 0.01) and its 1600 analysed steps
HP = Hyperparams(lr=0.0025, momentum=0.9, batch_size=32, weight_decay=0.01)
N = 1600


def test_paths_start_stationary():
    """Variance and lag-1 autocovariance at both ends against the impulse-response sums."""
    rho, reps = 28.0, 4000
    x = ar2_paths(rho, HP, 200, reps, seed=1)
    a1, a2 = 1 + HP.momentum - HP.lr * (rho + HP.weight_decay), -HP.momentum
    psi = [1.0, a1]
    for _ in range(20000):
        psi.append(a1 * psi[-1] + a2 * psi[-2])
    psi = np.array(psi)
    gamma0, gamma1 = psi @ psi, psi[1:] @ psi[:-1]
    for k in (0, -1):
        for got, want in ((x[k] ** 2, gamma0), (x[k] * x[k - 1 if k else 1], gamma1)):
            se = got.std(ddof=1) / np.sqrt(reps)
            assert abs(got.mean() - want) < 4 * se, (k, got.mean(), want, se)


@pytest.mark.parametrize("rho", [7.0, 28.0, 112.0])
def test_hann_estimator_matches_the_exact_spectrum_where_boxcar_is_biased(rho):
    theory = ar2_mean_frequency(rho, HP, np.fft.rfftfreq(N))
    hann = ar2_frequency_spread(rho, HP, N, replicas=600, seed=2)
    box = ar2_frequency_spread(rho, HP, N, replicas=600, seed=2, window="boxcar")
    se = hann.mean_frequency_std / np.sqrt(hann.replicas)
    print(f"rho={rho}: theory {theory:.4f}, hann {hann.mean_frequency / theory - 1:+.2%} "
          f"(+-{se / theory:.2%}), boxcar {box.mean_frequency / theory - 1:+.2%}, "
          f"one path's spread {hann.mean_frequency_std / theory:.1%}")
    assert abs(hann.mean_frequency / theory - 1) < 0.01
    assert hann.mean_frequency_std < 0.05 * theory  # the row's tolerance (3 x spread) stays < 15%
    assert box.mean_frequency / theory - 1 > 0.005 + 4 * box.mean_frequency_std / np.sqrt(box.replicas)


def test_spread_is_the_spread_of_independently_simulated_paths():
    """Paths from a plain recursion after a long burn-in: their estimates scatter as the spread says."""
    rho, reps, burn = 28.0, 400, 3000
    rng = np.random.default_rng(3)
    a1, a2 = 1 + HP.momentum - HP.lr * (rho + HP.weight_decay), -HP.momentum
    x = np.zeros((burn + N, reps))
    for k in range(2, burn + N):
        x[k] = a1 * x[k - 1] + a2 * x[k - 2] + rng.standard_normal(reps)
    est = oscillation_spectrum(x[burn:]).mean_frequency
    spread = ar2_frequency_spread(rho, HP, N, replicas=reps, seed=4)
    assert abs(est.std(ddof=1) / spread.mean_frequency_std - 1) < 0.2
    assert abs(est.mean() - spread.mean_frequency) < 4 * spread.mean_frequency_std * np.sqrt(2 / reps)


def test_bad_modes_are_refused():
    with pytest.raises(ValueError, match="eigenvalue \\+ weight_decay"):
        ar2_frequency_spread(-1.0, HP, N)
    with pytest.raises(ValueError, match="hyper.lr"):
        ar2_frequency_spread(1e4, HP, N)
    with pytest.raises(ValueError, match="window"):
        oscillation_spectrum(np.ones(10), window="hamming")
