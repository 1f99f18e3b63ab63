r"""Decision gates: checks a sequential decision must pass before it is reported.

A failing gate turns the look's decision into ``invalid`` (the experiment is not concluded
on it; someone has to look). Each gate records its statistic, p-value and threshold.

- **traffic**: did the treatment change who is measured? User-days per variant in the post
  period against the pre period: the Pearson chi-square X_b of the variant x {pre, post}
  table (V - 1 degrees of freedom). Zones' traffic drifts by more than multinomial noise
  (a zone grows, a local holiday), so the test is the quasi-likelihood one (McCullagh and
  Nelder 1989, ch. 4.5): the dispersion phi is the chi-square of the zone x {pre, post}
  tables within each variant over its sum_v (K_v - 1) degrees of freedom, and
  F = X_b / (V - 1) / phi ~ F(V - 1, sum_v (K_v - 1)); with phi <= 1 it is X_b ~ chi2(V - 1).
- **mix:<name>**: the treatment's DiD effect on a per user-day composition expression
  (e.g. tenure, the share of new users), zone-clustered, the same TWFE fit as the metrics:
  post against pre, treated against control; its t and p against t(G - 1), G zones, as the
  decisions use (the convention's N - k over-rejects with few zones).
- **pretrend**: the event study's joint test that the pre-period leads are zero.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from sparklift.config import GatesConfig
from sparklift.geo.did import effect_columns
from sparklift.stats.ssc import SmallSample
from sparklift.stats.twfe import CellStats, TwfeFit

MIX_PREFIX = "mix__"  # cells column of a mix expression: mix__<name>


@dataclass(frozen=True)
class Gate:
    gate: str  # traffic | mix:<name> | pretrend
    statistic: float | None
    p_value: float | None  # None: not computed (e.g. no event study), counts as passed
    threshold: float

    @property
    def passed(self) -> bool:
        return self.p_value is None or self.p_value >= self.threshold

    def describe(self) -> str:
        return f"gate {self.gate} failed: p {self.p_value:.3g} < {self.threshold}"


def _chi_square(table: np.ndarray) -> float:
    """Pearson's statistic of independence for a rows x columns table of counts."""
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    keep = expected > 0
    return float((((table - expected) ** 2)[keep] / expected[keep]).sum())


def traffic_gate(
    cells: CellStats, variant_of_zone: Mapping[int, str], start: dt.date, threshold: float
) -> Gate:
    """User-days per variant post against pre, dispersion-adjusted (module docstring)."""
    days = pd.to_datetime(pd.Series(cells.day)).dt.date.to_numpy()
    frame = pd.DataFrame(
        {
            "variant": pd.Series(cells.zone).map(variant_of_zone).to_numpy(),
            "zone": cells.zone,
            "post": days >= start,
            "n": cells.n,
        }
    )
    by_zone = frame.pivot_table(
        index=["variant", "zone"], columns="post", values="n", aggfunc="sum", fill_value=0
    ).reindex(columns=[False, True], fill_value=0)
    by_variant = by_zone.groupby(level="variant").sum().to_numpy(dtype=float)
    between = _chi_square(by_variant)
    df_between = len(by_variant) - 1
    within, df_within = 0.0, 0
    for _, zones in by_zone.groupby(level="variant"):
        within += _chi_square(zones.to_numpy(dtype=float))
        df_within += len(zones) - 1
    phi = within / df_within if df_within else 1.0
    if phi > 1:
        statistic = between / phi
        p = float(stats.f.sf(statistic / df_between, df_between, df_within))
    else:
        statistic, p = between, float(stats.chi2.sf(between, df_between))
    return Gate("traffic", statistic, p, threshold)


def mix_gates(
    cells: CellStats,
    variant_of_zone: Mapping[int, str],
    treatments: list[str],
    start: dt.date,
    names: list[str],
    ssc: SmallSample,
    threshold: float,
) -> dict[str, list[Gate]]:
    """Per treatment, one gate per mix expression (cells column ``mix__<name>``)."""
    effects, labels = effect_columns(cells, variant_of_zone, treatments, start)
    out: dict[str, list[Gate]] = {v: [] for v in treatments}
    for name in names:
        fit = TwfeFit(cells, effects, labels, MIX_PREFIX + name)
        res = fit.result("zone", ssc)
        for v in treatments:  # a constant expression has no shift (and no finite p)
            t = res[v].t
            p = float(2 * stats.t.sf(abs(t), fit.n_zones - 1)) if np.isfinite(t) else None
            out[v].append(Gate(f"mix:{name}", t, p, threshold))
    return out


def look_gates(
    cells: CellStats,
    variant_of_zone: Mapping[int, str],
    treatments: list[str],
    start: dt.date,
    settings: GatesConfig,
    ssc: SmallSample,
    pretrend: Mapping[tuple[str, str], float | None],
) -> dict[tuple[str, str], list[Gate]]:
    """Every gate of each (metric, variant) of ``pretrend``'s keys at a decision look."""
    traffic = traffic_gate(cells, variant_of_zone, start, settings.traffic_p)
    mix = mix_gates(
        cells, variant_of_zone, treatments, start, list(settings.mix), ssc, settings.mix_p
    )
    return {
        (metric, variant): [
            traffic,
            *mix[variant],
            Gate("pretrend", None, p, settings.pretrend_p),
        ]
        for (metric, variant), p in pretrend.items()
    }
