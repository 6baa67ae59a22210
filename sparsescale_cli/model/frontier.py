"""The compute-optimal frontier of the loss law L(N, D) = E + A N^-a_N + B D^-a_D.

Compute is C = k N D, with k = 1 for the N D count of a ridge fit, k = 6 for
the 6 N D rule of thumb of a forward and backward pass, and k = T for
full-batch gradient descent run for T steps.

At fixed C the loss is smallest where the two terms' logarithmic
derivatives balance, a_N A N^-a_N = a_D B D^-a_D, which gives in closed form

    N*(C) = G (C/k)^(a_D/(a_N+a_D)),   D*(C) = (C/k) / N*(C),
    G = (a_N A / (a_D B))^(1/(a_N+a_D)),
    L*(C) = E + A N*^-a_N (1 + a_N/a_D).

The exponent pair a_D/(a_N+a_D), a_N/(a_N+a_D) holds for any loss of the
scaling form L - E = N^-a_N g(D^a_D / N^a_N), not only the additive one, so
it is an asymptote of the model. The prefactor G and L* rest on the
additive form, which ignores the interaction of N and D: the interpolation
peak at N = rank(X) ~ K(D) and the factor N/(N - rank(X)) above it. Those
are conjecture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from . import theory
from .laws import DataLaw, Teacher

COST_ND = "nd"
COST_6ND = "6nd"
COST_ND_STEPS = "nd-steps"
COST_MODELS = (COST_ND, COST_6ND, COST_ND_STEPS)


def cost_multiplier(cost: str, steps: float | None = None) -> float:
    """Return k in C = k N D for the cost model ``cost``.

    Parameters
    ----------
    cost : {"nd", "6nd", "nd-steps"}
    steps : float, optional
        T, the number of gradient-descent steps; required by "nd-steps".
    """
    if cost == COST_ND:
        return 1.0
    if cost == COST_6ND:
        return 6.0
    if cost == COST_ND_STEPS:
        if steps is None or not steps >= 1:
            raise ValueError(f"cost model '{COST_ND_STEPS}' needs steps >= 1, got {steps}")
        return float(steps)
    raise ValueError(f"cost model must be one of {', '.join(COST_MODELS)}, got {cost!r}")


@dataclass(frozen=True)
class Optimum:
    """The compute-optimal allocation at one budget."""

    compute: float
    n_features: float
    n_samples: float
    loss: float


@dataclass(frozen=True)
class AdditiveLaw:
    """L(N, D) = E + A N^-a_N + B D^-a_D.

    Attributes
    ----------
    floor : float
        E, the loss no N or D removes (sigma^2 in the model).
    feature_prefactor, feature_exponent : float
        A and a_N of the feature-limited term.
    data_prefactor, data_exponent : float
        B and a_D of the data-limited term.
    """

    floor: float
    feature_prefactor: float
    feature_exponent: float
    data_prefactor: float
    data_exponent: float

    def loss(self, n_features, n_samples):
        """Return L(N, D), elementwise over arrays."""
        n_features = np.asarray(n_features, dtype=float)
        n_samples = np.asarray(n_samples, dtype=float)
        return (self.floor + self.feature_prefactor * n_features**-self.feature_exponent
                + self.data_prefactor * n_samples**-self.data_exponent)

    def frontier_exponents(self) -> tuple[float, float]:
        """Return the exponents of N*(C) and D*(C): a_D/(a_N+a_D) and a_N/(a_N+a_D)."""
        total = self.feature_exponent + self.data_exponent
        return self.data_exponent / total, self.feature_exponent / total

    def optimum(self, compute: float, multiplier: float = 1.0) -> Optimum:
        """Return N*, D* and L* at compute C = k N D (closed form; see the module notes)."""
        if not compute > 0:
            raise ValueError(f"compute budget must be positive, got {compute}")
        a_n, a_d = self.feature_exponent, self.data_exponent
        a, b = self.feature_prefactor, self.data_prefactor
        product = compute / multiplier
        if a <= 0 or b <= 0:
            raise ValueError("the frontier needs positive prefactors A and B (a term with zero weight has no optimum)")
        log_n = (math.log(a_n * a / (a_d * b)) + a_d * math.log(product)) / (a_n + a_d)
        n_features = math.exp(log_n)
        n_samples = product / n_features
        loss = self.floor + a * n_features**-a_n * (1.0 + a_n / a_d)
        return Optimum(compute, n_features, n_samples, loss)


def theory_law(law: DataLaw, teacher: Teacher) -> AdditiveLaw:
    """Return the additive law with the constants the model implies.

    Notes
    -----
    - E = sigma^2, the label noise (exact).
    - A N^-a_N is the large-N asymptote of the D = inf deterministic
      equivalent L_DE(N) - sigma^2 for M = inf.
    - For s > 1, B D^-a_D is the large-D asymptote of the unseen mass,
      B = (k/s) Gamma(a_D) c^-a_D with a_D = (a + beta)/s.
    - For the dense model (s = 0) the loss is symmetric in N and D at
      leading order (Maloney, Roberts and Sully 2022): B = A, a_D = a_N.

    0 < s <= 1 is rejected: every coordinate is then seen often, and the
    data-limited loss depends on a finite M, which this law does not model.
    """
    if 0 < law.s <= 1:
        raise ValueError(f"the frontier theory needs s = 0 (dense) or s > 1, got s = {law.s:g}")
    if teacher.beta >= 1:
        raise ValueError(f"the frontier theory needs teacher beta < 1, got {teacher.beta:g}")
    a_n, a_d = theory.exponents(law, teacher)
    floor = teacher.noise**2
    if law.s == 0:
        if law.amplitude != "variance_preserving":
            raise ValueError("the dense frontier theory needs variance-preserving amplitudes")
        # The variance-preserving covariance i^-(1 + alpha) does not depend on s or c, so any
        # M = inf law with the same alpha gives the dense model's feature-limited prefactor.
        stand_in = DataLaw(alpha=law.alpha, s=2.0, c=1.0, M=math.inf)
        prefactor = theory.deterministic_equivalent_asymptote(stand_in, teacher, 1.0)
        return AdditiveLaw(floor, prefactor, a_n, prefactor, a_n)
    infinite = replace(law, M=math.inf)
    feature_prefactor = theory.deterministic_equivalent_asymptote(infinite, teacher, 1.0)
    data_prefactor = float(theory.unseen_mass_asymptote(infinite, teacher, 1.0))
    return AdditiveLaw(floor, feature_prefactor, a_n, data_prefactor, a_d)


def dense_counterpart(law: DataLaw) -> DataLaw:
    """Return the dense model (s = 0, c = 1) with the same alpha, for comparison.

    Its M is irrelevant to the leading-order law, so M keeps the value of
    ``law`` when finite and is otherwise a placeholder of 2^53.
    """
    M = law.M if math.isfinite(law.M) else float(2**53)
    return DataLaw(alpha=law.alpha, s=0.0, c=1.0, M=M)
