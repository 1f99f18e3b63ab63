r"""Group sequential monitoring of a geo experiment: its plan at design, a decision per look.

**Alpha.** Each (treatment, primary metric) comparison is tested at alpha / (treatments x
primary metrics) (Bonferroni: valid whatever the correlation of comparisons that share a
control; Dunnett's exact split would gain little with two or three variants and needs their
correlation at every look). Secondary metrics get the same bounds and are reported, but
never decide.

**Information.** The design fits its AA check at every planned look's duration, so the
planned fractions are t_k = (se_K / se_k)^2 and the maximum information is I_max = 1 / se_K^2
(se_K: the standard error at the planned duration). Spending needs, at a look, the share of
the information the experiment will have at its end -- a fixed date. ``sequential.information``:

- ``planned`` (default): the look's planned fraction. Projecting the end date's standard
  error from today's with the design's growth of information gives back the planned
  fraction whatever today's variance level. The observed ratio is a poor estimate of it:
  the standard errors are noisy (in the simulation's A/A worlds (se_K / se)^2 at the first
  look spans 0.23-0.90, 10%-90%, around a planned 0.43), and under a heterogeneous effect
  the standard error also carries the zones' spread of the effect (a median 0.50 of the
  design's information at the end at 1.5 x the MDE), so observed fractions spend too
  little alpha early (``bench/RESULTS.md``, "sequential").
- ``observed``: t = (se_K / se_now)^2 = 1 / (I_max se_now^2) from the observed standard
  error of decisions, capped before the end at the look's planned fraction: a standard
  error that happens to be small would otherwise both lower the bound and raise |z| -- a
  data-dependent bound that inflated false positives by 1-2 points in the simulation.
  Information slower than planned spends less (a higher bound).

Without a design (an experiment registered by the generator) fractions are calendar time,
days elapsed / planned days. Fractions must increase: a look whose t does not exceed the
previous look's by 0.001 is taken at the previous t + 0.001 (it then nearly repeats the
previous look: its bound lies close to that look's and it spends almost no alpha). A
skipped look (the pipeline did not run that day) spends nothing: the next look spends, at
its own fraction, what the spending function allows by then (Lan and DeMets 1983). The look
at the end date is final and spends all alpha left, whatever t. The observed fraction is
reported in the ``reason`` of every look's row either way.

**Decision** per metric and variant at a look, on z = Phi^-1(F_t(estimate / se; df)): the t
statistic mapped to the normal scale at its p-value against t(df). With long-tailed zone
sizes a few big zones carry the estimate and the zone-clustered (CV1) standard error is too
small too often: the reported p-values over-reject (``bench/RESULTS.md``, "sequential").
Decisions therefore use their own inference (``sequential.inference``): by default the zone
jackknife (CV3, :mod:`sparklift.stats.jackknife`) with df = G - 1, as MacKinnon, Nielsen and
Webb (2023) recommend; or CV1 with df = G* - 1, G* the effective number of zones of the
estimate (:mod:`sparklift.stats.clusters`), which over-rejected more in the simulation. The
design's plan (information, MDE, expected days) uses the same. Then:
efficacy if z >= u_k; harm if z <= -u_k (two-sided plans); futility if z <= the futility
bound l_k (when planned); at the final look, no_effect when nothing was crossed; else continue.
A failing gate (:mod:`sparklift.geo.gates`) makes it invalid. A variant's decision comes from
its primary metrics: invalid if any is, else harm if any, else efficacy if any, else
futility/no_effect if all are, else continue. A variant with a decision other than continue
or invalid stops (later looks report it as stopped); the experiment concludes when every
treatment has stopped.

**Estimates.** The repeated CI estimate +- q_k se with q_k = F_t^-1(Phi(u_k); df): with a
two-sided plan all of them cover the effect at once with probability 1 - alpha (per
comparison), with a one-sided one 1 - 2 alpha. At a stop, the stage-wise ordering p-value
(two-sided: doubled) and the median unbiased estimate (Jennison and Turnbull 2000, ch. 8).
A two-sided plan takes them on the side z fell on; a one-sided plan on the upper side only,
the side its test is of, so a futility or no_effect stop at z < 0 has a p-value above 1/2.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.optimize import brentq

from sparklift.errors import InputError
from sparklift.geo.experiment import ExperimentConfig
from sparklift.geo.gates import Gate
from sparklift.stats.clusters import effective_clusters
from sparklift.stats.sequential import (
    Plan,
    Spending,
    bounds_at,
    crossing_probabilities,
    plan,
    spending,
    stagewise_p,
)
from sparklift.stats.sequential import median_unbiased as mue
from sparklift.stats.ssc import convention
from sparklift.stats.twfe import TwfeFit

TERMINAL = ("efficacy", "harm", "futility", "no_effect")
MIN_STEP = 1e-3
MAX_DRIFT = 1e3  # standard errors: a plan that needs more has no usable MDE


def sequential_plan(spec: ExperimentConfig, t: Sequence[float]) -> Plan:
    """The plan of one comparison at the planned fractions ``t`` (a fixed horizon -- one
    look at t = 1 spending all alpha -- when the experiment has no sequential section)."""
    seq = spec.sequential
    efficacy = spending(seq.spending, seq.param) if seq else Spending("obf")
    futility = seq.futility if seq else None
    return plan(
        t,
        alpha=spec.alpha_per_test,
        beta=futility.beta if futility and futility.beta else 1 - spec.power,
        efficacy=efficacy,
        futility=spending(futility.spending, futility.param) if futility else None,
        binding=bool(futility and futility.binding),
        sides=seq.sides if seq else 2,
    )


def planned_fractions(se: Sequence[float]) -> np.ndarray:
    """t_k = (se_K / se_k)^2 at the planned looks, increasing, the last 1."""
    se = np.asarray(se, dtype=float)
    t = (se[-1] / se) ** 2
    for k in range(len(t) - 1):
        t[k] = min(max(t[k], t[k - 1] + MIN_STEP if k else MIN_STEP), 1 - MIN_STEP * (len(t) - k))
    t[-1] = 1.0
    return t


def look_days(spec: ExperimentConfig) -> list[int]:
    """Days since the start (1 = the start) of each planned look."""
    return [(d - spec.start).days + 1 for d in spec.look_dates]


def t_quantile(z: np.ndarray | float, df: float) -> np.ndarray:
    """F_t^-1(Phi(z); df) = sign(z) F_t^-1(1 - Phi(|z|); df), from the tail: Phi(z) rounds
    to 1 from z = 8.3 on, the tail is exact up to the plans' largest bound (20)."""
    z = np.asarray(z, dtype=float)
    return np.sign(z) * stats.t.isf(stats.norm.sf(np.abs(z)), df)


def t_scale(p: Plan, df: float) -> tuple[np.ndarray, np.ndarray]:
    """The plan's bounds on the scale of the t statistic a decision reads them on:
    z >= u  <=>  t >= F_t^-1(Phi(u); df) (see the module docstring)."""
    return t_quantile(p.upper, df), t_quantile(p.lower, df)


def plan_power(p: Plan, drift: float, df: float) -> float:
    """Probability of an efficacy decision at ``drift`` (theta / se_K) with decisions read
    against t(df), the t statistic taken as N(drift sqrt(t_k), 1)."""
    upper, lower = t_scale(p, df)
    return float(crossing_probabilities(p.t, upper, lower, drift)[0].sum())


def expected_days(p: Plan, days: Sequence[int], drift: float, df: float) -> float:
    """Expected duration in days when acting on every bound, at ``drift``."""
    upper, lower = t_scale(p, df)
    up, lo = crossing_probabilities(p.t, upper, lower, drift)
    stop = up + lo
    stop[-1] = 1.0 - stop[:-1].sum()
    return float(np.asarray(days, dtype=float) @ stop)


def mde_drift(p: Plan, df: float, power: float) -> float:
    """The drift theta / se_K at which the plan decides efficacy with probability ``power``.
    Few degrees of freedom put the t bounds far out (df 1 and alpha 0.0125: 51 standard
    errors at a fixed horizon), so the search bracket doubles from 40 up to MAX_DRIFT;
    beyond, the plan has no usable MDE and the design is refused."""
    high = 40.0
    while plan_power(p, high, df) < power:
        if high >= MAX_DRIFT:
            raise InputError(
                f"the sequential plan does not reach power {power} below a drift of "
                f"{MAX_DRIFT:g} standard errors: its decisions' t has {df:g} degrees of "
                f"freedom, G* - 1 with G* = {df + 1:g} (the zones, or their effective number "
                "with sequential.inference effective_clusters); use more zones (or zones of "
                "more even size), fewer sequential looks or a larger alpha"
            )
        high = min(2 * high, MAX_DRIFT)
    return float(brentq(lambda d: plan_power(p, d, df) - power, 0.0, high, xtol=1e-8))


def decision_inference(fit: TwfeFit, variant: str, spec: ExperimentConfig) -> tuple[float, float]:
    """The standard error of ``variant``'s effect and the t degrees of freedom that
    decisions use (module docstring, **Decision**)."""
    seq = spec.sequential
    if seq is None or seq.inference == "jackknife":
        try:
            res = fit.result("zone-jackknife", convention(spec.convention), spec.alpha)
        except InputError as e:
            raise InputError(f"{e}; {_jackknife_alternative(spec)}") from None
        return res[variant].se, res.df
    e = fit.result("zone", convention(spec.convention), spec.alpha)[variant]
    return e.se, max(1.0, effective_clusters(fit, variant) - 1)


def _jackknife_alternative(spec: ExperimentConfig) -> str:
    """How the experiment can decide without the zone jackknife: the key to set when it
    has a sequential plan; a one-look plan in place of ``sequential: null``, which always
    decides with the jackknife."""
    if spec.sequential is not None:
        return "or set sequential.inference to effective_clusters"
    return (
        "a fixed horizon (sequential: null) decides with the zone jackknife: to decide with "
        "effective_clusters instead, give the experiment a sequential section with "
        f"inference: effective_clusters and looks: {spec.post_days} (one look, at the end)"
    )


def design_plan(
    spec: ExperimentConfig, se_by_look: Sequence[float], target: float, df: float
) -> dict:
    """The plan's figures for one comparison from its design standard errors at each look,
    the absolute target effect and the decisions' degrees of freedom (of the design's
    fit, :func:`decision_inference`): the geo_design_checks columns of the plan."""
    t = planned_fractions(se_by_look)
    p = sequential_plan(spec, t)
    se_max = float(se_by_look[-1])
    drift = abs(target) / se_max
    days = look_days(spec)
    return {
        "max_information": 1 / se_max**2,
        "planned_fractions": [float(x) for x in t],
        "planned_upper": [float(x) for x in p.upper],
        "planned_lower": [float(x) if np.isfinite(x) else None for x in p.lower],
        "inflation": p.inflation,
        "decision_df": df,
        "sequential_mde": mde_drift(p, df, spec.power) * se_max,
        "sequential_power": plan_power(p, drift, df),
        "expected_days_h0": expected_days(p, days, 0.0, df),
        "expected_days_target": expected_days(p, days, drift, df),
    }


@dataclass(frozen=True)
class Observation:
    """One metric and variant's DiD estimate at the run date."""

    metric: str
    variant: str
    primary: bool
    estimate: float
    se: float
    df: float


@dataclass(frozen=True)
class History:
    """One comparison's earlier decision looks: fractions in look order, and whether its
    variant already stopped (with the decision it stopped on)."""

    fractions: tuple[float, ...] = ()
    stopped: tuple[str, dt.date] | None = None  # (decision, look date)


def z_score(estimate: float, se: float, df: float) -> float:
    """The t statistic mapped to the normal scale at its own p-value."""
    t = estimate / se
    z = stats.norm.isf(stats.t.sf(t, df)) if t > 0 else stats.norm.ppf(stats.t.cdf(t, df))
    return float(np.clip(z, -37.0, 37.0))


def fraction(spec: ExperimentConfig, run_date: dt.date, se: float, i_max: float | None) -> float:
    """The information fraction reached (module docstring)."""
    if i_max:
        return 1.0 / (i_max * se**2)
    return ((run_date - spec.start).days + 1) / spec.post_days


def decide(
    spec: ExperimentConfig,
    run_date: dt.date,
    obs: Observation,
    i_max: float | None,
    planned_t: Sequence[float] | None,
    history: History,
    gates: Sequence[Gate] = (),
) -> dict:
    """The geo_sequential row of one comparison at ``run_date`` (without its variant's
    decision, see :func:`variant_decisions`)."""
    z = z_score(obs.estimate, obs.se, obs.df)
    t_now = fraction(spec, run_date, obs.se, i_max)
    row = {
        "metric": obs.metric,
        "variant": obs.variant,
        "primary": obs.primary,
        "estimate": obs.estimate,
        "se": obs.se,
        "z": z,
        "information_fraction": t_now,
        "decision_point": False,
        "look": None,
        "gates": [],
    }
    if history.stopped:
        decision, on = history.stopped
        return row | {"decision": "stopped", "reason": f"variant stopped: {decision} on {on}"}
    if run_date not in spec.look_dates:
        return row | {"decision": None, "reason": "not a decision point"}
    prior = list(history.fractions)
    if planned_t is None:
        planned_t = [(d / spec.post_days) for d in look_days(spec)]
    final = run_date == spec.end
    cap = planned_t[spec.look_dates.index(run_date)]
    if spec.sequential is not None and spec.sequential.information == "observed":
        cap = min(t_now, cap)
    t_k = 1.0 if final else max(cap, prior[-1] + MIN_STEP if prior else MIN_STEP)
    if t_k >= 1:
        final, t_k = True, 1.0
    t_all = [*prior, t_k]
    p = sequential_plan(spec, planned_t)
    upper, lower = bounds_at(p, t_all, final=final)
    u, lo = float(upper[-1]), float(lower[-1])
    decision = _crossing(z, u, lo, p, final)
    reason = f"z {z:.3f} against bounds {u:.3f} / {lo:.3f} at t {t_k:.3f} (observed {t_now:.3f})"
    failed = [g for g in gates if not g.passed]
    if failed:
        reason = f"{decision} withheld: " + "; ".join(g.describe() for g in failed)
        decision = "invalid"
    q = float(t_quantile(u, obs.df))
    share = p.alpha / p.sides  # each side spends the function at alpha / sides
    spent = 1.0 if final else p.sides * float(p.efficacy.cumulative([t_k], share)[0]) / p.alpha
    row |= {
        "decision_point": True,
        "look": len(t_all),
        "information_fraction": t_k,
        "efficacy_bound": u,
        "harm_bound": -u if p.sides == 2 else None,
        "futility_bound": lo if p.futility is not None else None,
        "alpha_spent": spent * p.alpha,
        "decision": decision,
        "reason": reason,
        "rci_low": obs.estimate - q * obs.se,
        "rci_high": obs.estimate + q * obs.se,
        "gates": [g.__dict__ for g in gates],
    }
    if decision in TERMINAL:
        # A two-sided plan orders outcomes on the side z fell on (the p-value then doubled);
        # a one-sided one only on the upper side, so a low z has a large p.
        sign = -1.0 if p.sides == 2 and z < 0 else 1.0
        k = len(t_all)
        one_sided = stagewise_p(t_all, upper, k, sign * z)
        row["final_p"] = min(1.0, p.sides * one_sided)
        i_max_now = 1.0 / (obs.se**2 * t_k)
        row["median_unbiased"] = sign * mue(t_all, upper, k, sign * z, i_max_now)
    return row


def _crossing(z: float, u: float, lo: float, p: Plan, final: bool) -> str:
    if z >= u:
        return "efficacy"
    if p.sides == 2 and z <= -u:
        return "harm"
    if p.futility is not None and z <= lo:
        return "futility"
    return "no_effect" if final else "continue"


def variant_decisions(rows: Sequence[Mapping]) -> dict[str, str]:
    """Each variant's decision at this look from its primary metrics' rows (module
    docstring); variants without a decision point here are left out."""
    out = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        own = [r for r in rows if r["variant"] == variant and r["primary"]]
        found = {r["decision"] for r in own}
        if "stopped" in found:
            out[variant] = "stopped"
        elif not any(r["decision_point"] for r in own):
            continue
        elif "invalid" in found:
            out[variant] = "invalid"
        elif "harm" in found:
            out[variant] = "harm"
        elif "efficacy" in found:
            out[variant] = "efficacy"
        elif found <= {"futility", "no_effect"}:
            out[variant] = "futility" if "futility" in found else "no_effect"
        else:
            out[variant] = "continue"
    return out


def conclusion(
    treatments: Sequence[str],
    decisions: Mapping[str, str],
    run_date: dt.date,
    stopped: Mapping[str, tuple[str, dt.date]],
) -> tuple[str, dt.date] | None:
    """The experiment's conclusion (reason, date) when every treatment has stopped, at this
    look or at earlier ones (``stopped``: the variant's decision and look date), else None.
    The date is the look at which the last one stopped, so a run that wrote its looks but
    was killed before it concluded the experiment is concluded by the next run as it was."""
    final = {
        v: stopped[v] if decisions.get(v) == "stopped" else (decisions.get(v), run_date)
        for v in treatments
    }
    if not all(d in TERMINAL for d, _ in final.values()):
        return None
    reason = "; ".join(f"{v}: {d} on {on}" for v, (d, on) in final.items())
    return reason, max(on for _, on in final.values())
