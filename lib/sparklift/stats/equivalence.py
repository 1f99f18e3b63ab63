r"""Two one-sided tests (TOST) of equivalence for an estimate with a standard error.

H0: |b| >= m against H1: |b| < m, with b ~ t(df) around its estimate
(the reference distribution of :mod:`sparklift.stats.inference`):
    p_low  = P(T >= (b_hat + m) / se)     (tests b <= -m)
    p_high = P(T <= (b_hat - m) / se)     (tests b >= +m)
    p_tost = max(p_low, p_high);  equivalent at level alpha when p_tost < alpha,
which is the same as the (1 - 2 alpha) confidence interval lying inside (-m, m).
"""

from __future__ import annotations

from sparklift.stats.inference import reference


def tost_p(estimate: float, se: float, margin: float, df: float) -> float:
    """The TOST p-value of equivalence within +-``margin`` (``margin`` > 0)."""
    if margin <= 0:
        raise ValueError(f"equivalence margin must be > 0, got {margin}")
    dist = reference(df)
    return float(max(dist.sf((estimate + margin) / se), dist.cdf((estimate - margin) / se)))
