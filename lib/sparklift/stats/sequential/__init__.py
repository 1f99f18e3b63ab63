"""Group sequential boundaries by Lan-DeMets error spending, and inference after stopping.

Import everything from this package (the module split may change; these names will not)::

    Spending(name: str, param: float | None = None)        # "obf" | "pocock" | "hsd" | "power"
        .cumulative(t: ArrayLike, level: float) -> np.ndarray
    spending(name: str, param: float | None = None) -> Spending
    parameter_error(name: str, param: float | None) -> str | None   # what param must be

    crossing_probabilities(t, upper, lower, drift: float) -> tuple[np.ndarray, np.ndarray]
    efficacy_bounds(t, alpha: float, spending: Spending, sides: int = 1) -> np.ndarray

    Plan  # frozen: t, alpha, beta, sides, efficacy, futility, binding,
          #         upper, lower, drift, inflation, alpha_spent
        .power(drift: float) -> float
        .expected_fraction(drift: float) -> float
    plan(t, alpha=0.025, beta=0.1, efficacy=Spending("obf"), futility: Spending | None = None,
         binding=False, sides=1) -> Plan
    bounds_at(design: Plan, t_observed: ArrayLike, final: bool = False)
        -> tuple[np.ndarray, np.ndarray]                    # (upper, lower) at observed looks

    repeated_ci(estimate, se, bound) -> tuple[lo, hi]
    stagewise_p(t, upper, k_stop: int, z_stop: float) -> float       # k_stop counts from 1
    median_unbiased(t, upper, k_stop: int, z_stop: float, i_max: float) -> float

``t`` are information fractions I_k / I_max (strictly increasing, > 0; an observed last one
may exceed 1), Z statistics are oriented so that large is good (upper = efficacy), and
``drift`` is theta * sqrt(I_max), so that E[Z_k] = drift * sqrt(t_k). A look that spends
(numerically) nothing gets the finite bound +-20, which stands for "no bound". Bad arguments
raise ``ValueError`` naming the argument.
"""

from sparklift.stats.sequential.boundaries import efficacy_bounds
from sparklift.stats.sequential.design import Plan, bounds_at, plan
from sparklift.stats.sequential.inference import median_unbiased, repeated_ci, stagewise_p
from sparklift.stats.sequential.integration import crossing_probabilities
from sparklift.stats.sequential.spending import Spending, parameter_error, spending

__all__ = [
    "Plan",
    "Spending",
    "bounds_at",
    "crossing_probabilities",
    "efficacy_bounds",
    "median_unbiased",
    "parameter_error",
    "plan",
    "repeated_ci",
    "spending",
    "stagewise_p",
]
