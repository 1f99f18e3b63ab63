"""The checks of a table's partition, evaluated from its metrics and their history.

Contract checks pass when their count is 0 (no nulls, duplicate keys, out-of-range,
unaccepted or orphan values). Anomaly checks compare today's value of a metric with its
values on the ``window_days`` days before (today excluded from its own training window; the
same weekday of the ``window_days`` weeks before with ``same_weekday``): an anomaly when
|z| = |x - mean| / sd exceeds ``sensitivity`` (elementary's rule; sd is the sample SD,
floored at 1% of |mean| so that a constant history flags a change above 3%, not any
change), or, with ``relative_change``, when |x / mean - 1| exceeds it. A value that is not
finite fails; past ones are left out. With fewer than
``min_history`` past values the check is skipped, never passed. The population stability
index of a binned column is sum (p - q) ln(p / q) over the bins, p today's shares and q the
window's pooled shares over the days binned with today's edges (each share floored at
1e-4, as empty bins would be infinite).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sparklift.config import QualityConfig
from sparklift.quality.metrics import psi_edges
from sparklift.quality.spec import TableSpec

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"
PSI_FLOOR = 1e-4
SD_FLOOR = 0.01  # of |mean|: a constant history flags a change above 3%, not any change

Metrics = Mapping[str, float | None]


@dataclass(frozen=True)
class Result:
    """One check's outcome: a row of ``quality_results``."""

    check_name: str
    kind: str
    severity: str
    statistic: float | None
    threshold: str
    status: str
    message: str


def contract_checks(
    spec: TableSpec, metrics: Metrics, schema_problems: Sequence[str], missing: Sequence[str]
) -> list[Result]:
    """Schema, freshness and the counting checks."""

    def count(kind: str, column: str | None, metric: str, what: str) -> Result:
        name = f"{kind}:{column}" if column else kind
        if column is not None and column in missing:
            return Result(name, kind, spec.severity_of(kind), None, "= 0", SKIPPED,
                          f"column {column} is missing (see the schema check)")  # fmt: skip
        n = metrics.get(metric)
        status = PASS if n == 0 else FAIL
        message = "" if status == PASS else f"{int(n or 0):,} {what}"
        return Result(name, kind, spec.severity_of(kind), n, "= 0", status, message)

    out = [
        Result("schema", "schema", spec.severity_of("schema"), float(len(schema_problems)),
               "= 0 problems", FAIL if schema_problems else PASS, "; ".join(schema_problems))
    ]  # fmt: skip
    rows = metrics.get("row_count") or 0.0
    if spec.date_column in missing:  # the partition cannot be found: not fresh
        why = f"date column {spec.date_column} is missing"
        out.append(Result("freshness", "freshness", spec.severity_of("freshness"), None,
                          "> 0 rows", FAIL, why))  # fmt: skip
    elif spec.date_column:
        out.append(
            Result("freshness", "freshness", spec.severity_of("freshness"), rows, "> 0 rows",
                   PASS if rows > 0 else FAIL,
                   "" if rows > 0 else f"no rows with {spec.date_column} = the run date")
        )  # fmt: skip
    out += [count("not_null", x, f"null_count:{x}", "nulls") for x in spec.not_null]
    lacking = [k for k in spec.key if k in missing]
    if lacking:
        out.append(Result("unique_key", "unique_key", spec.severity_of("unique_key"), None,
                          "= 0", SKIPPED, f"key columns {lacking} are missing"))  # fmt: skip
    elif spec.key:
        out.append(count("unique_key", None, "duplicate_keys",
                         f"rows repeat a key ({', '.join(spec.key)})"))  # fmt: skip
    c = spec.checks
    for x, (low, high) in c.ranges.items():
        bounds = [
            f">= {low:g}" if low is not None else "",
            f"<= {high:g}" if high is not None else "",
        ]
        what = f"values not {' and '.join(b for b in bounds if b)} or not finite"
        out.append(count("range", x, f"out_of_range:{x}", what))
    for x, values in c.accepted.items():
        out.append(count("accepted", x, f"not_accepted:{x}", f"values not in {values}"))
    for x, target in c.references.items():
        out.append(count("reference", x, f"orphans:{x}", f"values not in {target}"))
    return out


def series(spec: TableSpec, metrics: Metrics) -> dict[str, float | None]:
    """The anomaly metrics of one partition: row count, null shares, means, quantiles,
    distinct values (derived from the stored metrics, so past days give the same)."""
    a = spec.checks.anomaly
    rows = metrics.get("row_count")
    out: dict[str, float | None] = {}
    if a.row_count:
        out["row_count"] = rows
    for x in a.null_share:
        n = metrics.get(f"null_count:{x}")
        out[f"null_share:{x}"] = n / rows if n is not None and rows else None
    names = [f"mean:{x}" for x in a.mean] + [f"distinct:{x}" for x in a.distinct]
    names += [f"quantile:{x}:{p:g}" for x, probs in a.quantiles.items() for p in probs]
    out |= {n: metrics.get(n) for n in names}
    return out


def training_days(day: dt.date, conf: QualityConfig) -> list[dt.date]:
    """The days whose values today's is compared with (today excluded)."""
    step = 7 if conf.same_weekday else 1
    return [day - dt.timedelta(days=step * k) for k in range(1, conf.window_days + 1)]


def anomaly_checks(
    spec: TableSpec,
    metrics: Metrics,
    history: Mapping[dt.date, Metrics],
    day: dt.date,
    conf: QualityConfig,
) -> list[Result]:
    """Each anomaly metric and each PSI column against its training window."""
    severity = spec.severity_of("anomaly")
    days = [d for d in training_days(day, conf) if d in history]
    past = [series(spec, history[d]) for d in days]
    out = []
    for name, x in series(spec, metrics).items():
        values = [v for p in past if (v := p.get(name)) is not None and math.isfinite(v)]
        out.append(_z_check(f"anomaly:{name}", x, values, severity, conf))
    for column in spec.checks.anomaly.psi:
        out.append(_psi_check(column, metrics, [history[d] for d in days], severity, conf))
    return out


def _z_check(
    name: str, x: float | None, values: Sequence[float], severity: str, conf: QualityConfig
) -> Result:
    n, bound = len(values), f"|z| <= {conf.sensitivity:g}"
    if x is not None and not math.isfinite(x):
        return Result(name, "anomaly", severity, None, bound, FAIL, f"{x} is not finite")
    if x is None or n < conf.min_history:
        why = "no value today" if x is None else f"{n} past values, {conf.min_history} needed"
        return Result(name, "anomaly", severity, None, bound, SKIPPED, why)
    mean = sum(values) / n
    sd = max(math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)), SD_FLOOR * abs(mean))
    z = abs(x - mean) / sd if sd > 0 else (0.0 if x == mean else math.inf)
    threshold = f"{bound} (mean {mean:.6g}, sd {sd:.6g}, n {n})"
    failed = z > conf.sensitivity
    change = abs(x / mean - 1) if mean else None
    if conf.relative_change is not None and change is not None:
        threshold += f"; |x / mean - 1| <= {conf.relative_change:g}"
        failed = failed or change > conf.relative_change
    message = f"{x:.6g} against a mean of {mean:.6g} (z {z:.2f})" if failed else ""
    return Result(name, "anomaly", severity, z, threshold, FAIL if failed else PASS, message)


def _psi_check(
    column: str, metrics: Metrics, past: Sequence[Metrics], severity: str, conf: QualityConfig
) -> Result:
    name, threshold = f"anomaly:psi:{column}", f"<= {conf.psi_threshold:g}"
    bins = [f"psi_bin:{column}:{i}" for i in range(conf.psi_bins)]
    today = [metrics.get(b) for b in bins]
    edges = psi_edges(metrics, column, conf.psi_bins)
    pooled = [0.0] * conf.psi_bins
    days = 0
    for p in past:  # the days binned with today's edges only
        counts = [p.get(b) for b in bins]
        if all(v is not None for v in counts) and psi_edges(p, column, conf.psi_bins) == edges:
            pooled = [a + float(v) for a, v in zip(pooled, counts, strict=True)]  # type: ignore[arg-type]
            days += 1
    if any(v is None for v in today) or days < conf.min_history or not sum(pooled):
        why = (
            "no bins today (the first day sets the reference edges)"
            if any(v is None for v in today)
            else f"{days} past days of bins, {conf.min_history} needed"
        )
        return Result(name, "anomaly", severity, None, threshold, SKIPPED, why)
    total = sum(today)  # type: ignore[arg-type]
    if not total:
        return Result(name, "anomaly", severity, None, threshold, SKIPPED, "no values today")
    psi = population_stability(
        [v / total for v in today],  # type: ignore[operator]
        [v / sum(pooled) for v in pooled],
    )
    failed = psi > conf.psi_threshold
    message = f"the distribution of {column} shifted (PSI {psi:.3f})" if failed else ""
    return Result(name, "anomaly", severity, psi, threshold, FAIL if failed else PASS, message)


def population_stability(p: Sequence[float], q: Sequence[float]) -> float:
    """sum (p - q) ln(p / q) over the bins, shares floored at PSI_FLOOR."""
    total = 0.0
    for a, b in zip(p, q, strict=True):
        a, b = max(a, PSI_FLOOR), max(b, PSI_FLOOR)
        total += (a - b) * math.log(a / b)
    return total
