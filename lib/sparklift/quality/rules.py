"""The checks of a table's partition, evaluated from its metrics and their history.

Contract checks pass when their count is 0 (no nulls, duplicate keys, out-of-range,
unaccepted or orphan values). Anomaly checks compare today's value of a metric with its
values on the ``window_days`` days before (today excluded from its own training window; the
same weekday of the ``window_days`` weeks before with ``same_weekday``): an anomaly when
|z| = |x - mean| / sd exceeds the bound of ``sensitivity`` sigmas. That is elementary's
rule with the bound widened for a mean and SD estimated from n values (:func:`z_bound`), so
that the false-alarm rate is the normal tail's, 0.27% per metric and day for 3 sigmas, not
the 1.2% that |z| > 3 gives with 14 values. sd is the sample SD, floored at 1% of the
window's mean |level|, so that a constant history flags a change of a few percent, not any
change, and a null share's at its binomial sd over today's rows (a column never null before
is not an anomaly for one stray null). With ``relative_change``, |x / expected - 1| above it
is an anomaly too (expected: the mean, or with ``season_days`` the value one season before
plus the mean change). With ``season_days`` (7: a weekly pattern) x and the window's
values are each one's change from the value ``season_days`` before (a seasonal naive
forecast's error: the weekly swing, which would inflate the sd, and a trend cancel out);
when that day's value is missing or failed its check, the value 14 days before stands in
(a loss repeated on the same weekday is measured against a good week), its change then two
weekly changes: against twice their mean, with sqrt(2) times their sd; without either, the
values themselves. A value that is not finite fails; past ones are left out, and so are past
values that failed their own check while they are fewer than half of the window (a lost
half of a day must not become the baseline that hides the next loss; a lasting change
becomes the new baseline after ``window_days / 2`` days of alarms), and, always, the days
whose partition was refused: no rows, or a failed check of severity ``error`` other than an
anomaly check (a partition delivered twice fails its key check in a table's first days,
before its anomaly checks have the history to fail, and must not be the norm). With fewer than
``min_history`` past values the check is skipped, never passed. The population stability
index of a binned column is sum (p - q) ln(p / q) over the bins, p today's shares and q the
window's pooled shares over the days binned with today's edges, each bin's count plus a
half (Jeffreys: an empty bin would be infinite). A shift is a PSI above ``psi_threshold``
or, for a small partition, above what sampling alone reaches (:func:`psi_bound`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

from sparklift.config import QualityConfig
from sparklift.quality.spec import TableSpec, psi_edges

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"
PSI_FLOOR = 1e-4
SD_FLOOR = 0.01  # of the mean level: a constant history flags a change of a few percent

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


VERSION_CHECK = "table_version"
TABLE_ID = " of table id "


def version_row(version: int, table_id: str) -> Result:
    """The row that ties a date's verdicts to the table version its checks read, and to the
    table's id (a table created again at the path counts its versions anew): a later
    commit that adds or removes rows of the partition makes them stale (the fall-back
    then passes over it, :mod:`sparklift.jobs.fallback`)."""
    return Result(
        VERSION_CHECK, "version", "error", float(version), "no later change of its rows",
        PASS, f"the checks read table version {version}{TABLE_ID}{table_id}",
    )  # fmt: skip


def checked_table_id(message: str) -> str | None:
    """The table id a :func:`version_row`'s message names (None: written before ids were)."""
    return message.rsplit(TABLE_ID, 1)[1] if TABLE_ID in message else None


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


def history_days(day: dt.date, conf: QualityConfig) -> list[dt.date]:
    """The past days the rule reads: the training days and, with ``season_days``, the days
    one season before them and one or two before today."""
    days = training_days(day, conf)
    season = dt.timedelta(days=conf.season_days)
    bases = [d - season for d in [day, *days]] + [day - 2 * season]
    return sorted({*days, *(bases if conf.season_days else [])})


def anomaly_checks(
    spec: TableSpec,
    metrics: Metrics,
    history: Mapping[dt.date, Metrics],
    day: dt.date,
    conf: QualityConfig,
    failed: Mapping[dt.date, Mapping[str, str]] | None = None,
) -> list[Result]:
    """Each anomaly metric and each PSI column against its training window; ``failed``:
    per past day, the checks that failed then and their severities (:func:`_failed_days`
    says which of its values are not trained on)."""
    severity = spec.severity_of("anomaly")
    if spec.date_column and not metrics.get("row_count"):  # freshness fails: not an anomaly
        why, z = "no rows for the run date (see freshness)", f"|z| <= {conf.sensitivity:g} sigma"
        psi = f"<= {conf.psi_threshold:g}"
        return [Result(f"anomaly:{n}", "anomaly", severity, None, z, SKIPPED, why)
                for n in series(spec, metrics)] + [
            Result(f"anomaly:psi:{x}", "anomaly", severity, None, psi, SKIPPED, why)
            for x in spec.checks.anomaly.psi
        ]  # fmt: skip
    failed = failed or {}
    days = [d for d in training_days(day, conf) if d in history]
    season = dt.timedelta(days=conf.season_days)
    out = []
    past = {d: series(spec, m) for d, m in history.items()}
    for name, x in series(spec, metrics).items():
        check = f"anomaly:{name}"
        bad = _failed_days(days, check, failed)
        levels = {
            d: v
            for d, m in past.items()
            if d not in bad and (v := m.get(name)) is not None and math.isfinite(v)
        }
        window = [levels[d] for d in days if d in levels]
        base, seasons = None, 1  # the same weekday's last good value: 7 days before, else 14
        if conf.season_days:
            seasons = 1 if day - season in levels else 2
            base = levels.get(day - seasons * season)
        changes = [
            levels[d] - levels[d - season] for d in days if d in levels and d - season in levels
        ]
        floor = _share_floor(name, x, window, metrics.get("row_count"))
        out.append(_z_check(check, x, window, severity, conf, base, changes, floor, seasons))
    for column in spec.checks.anomaly.psi:
        bad = _failed_days(days, f"anomaly:psi:{column}", failed)
        kept = [history[d] for d in days if d not in bad]
        out.append(_psi_check(column, metrics, kept, severity, conf))
    return out


def _share_floor(name: str, x: float | None, window: Sequence[float], rows: float | None) -> float:
    """The least sd of a null share: its binomial sd over today's rows, at the window's
    share and at least one row's, so that a column never null before is not an anomaly for
    a stray null (a share's history of zeros has sd 0)."""
    if not name.startswith("null_share:") or x is None or not window or not rows:
        return 0.0
    p = min(max(sum(window) / len(window), 1 / rows), 0.5)
    return math.sqrt(p * (1 - p) / rows)


def _failed_days(
    days: Sequence[dt.date], check: str, failed: Mapping[dt.date, Mapping[str, str]]
) -> set[dt.date]:
    """The past days whose value of the check is not trained on: those whose partition was
    refused, never, however many (an outage must not make an empty table the norm, nor a
    faulty delivery a normal one): no rows (freshness failed: their anomaly checks were
    skipped) or a failed check of severity error that is not an anomaly check (whose own
    failures stay under the next rule, so that a lasting change can become the baseline);
    and those the check failed, unless they are half of the window or more (then the change
    has lasted)."""
    refused = {
        d
        for d, checks in failed.items()
        if "freshness" in checks
        or any(s == "error" and not c.startswith("anomaly:") for c, s in checks.items())
    }
    own = {d for d, checks in failed.items() if check in checks} - refused
    return refused | (own if 2 * len(own & set(days)) < len(days) else set())


def z_bound(sensitivity: float, n: int) -> float:
    """The |z| above which a value is an anomaly, after ``n`` past values: the two-sided
    tail of ``sensitivity`` normal SDs as a Student-t prediction bound, the t(n - 1)
    quantile x sqrt(1 + 1/n) (the mean and SD are estimates from n values). 3.82 for 3 with
    14 values, 5.24 with 7; ``sensitivity`` itself as n grows."""
    tail = 2 * stats.norm.sf(sensitivity)
    return float(stats.t.isf(tail / 2, n - 1) * math.sqrt(1 + 1 / n))


def _z_check(
    name: str,
    x: float | None,
    window: Sequence[float],
    severity: str,
    conf: QualityConfig,
    base: float | None = None,
    changes: Sequence[float] = (),
    floor: float = 0.0,
    seasons: int = 1,
) -> Result:
    """|z| of today's value against the window's values, or with ``base`` (the value
    ``seasons`` seasons before today) of today's change against the window days' changes
    over one season (``seasons`` of them: their mean times ``seasons``, their sd times its
    square root); ``floor``: the least sd (a share's binomial sd)."""
    bound = f"|z| <= {conf.sensitivity:g} sigma"
    if x is not None and not math.isfinite(x):
        return Result(name, "anomaly", severity, None, bound, FAIL, f"{x} is not finite")
    seasonal = base is not None and len(changes) >= conf.min_history
    sample = changes if seasonal else window
    n = len(sample)
    if n < conf.min_history:
        why = f"{n} past values, {conf.min_history} needed"
        return Result(name, "anomaly", severity, None, bound, SKIPPED, why)
    if x is None:  # e.g. a mean of a column null or not finite in every row today
        why = f"no value today, against {n} past values"
        return Result(name, "anomaly", severity, None, bound, FAIL, why)
    level = sum(window) / len(window)
    target = x - base if seasonal else x  # type: ignore[operator]
    k = seasons if seasonal else 1
    mean = k * sum(sample) / n
    spread = math.sqrt(sum((v - mean / k) ** 2 for v in sample) / (n - 1))
    sd = math.sqrt(k) * max(spread, SD_FLOOR * abs(level), floor)
    z = abs(target - mean) / sd if sd > 0 else (0.0 if target == mean else math.inf)
    limit = z_bound(conf.sensitivity, n)
    lag = k * conf.season_days
    what = f"the change from {lag} days before, " if seasonal else ""
    threshold = f"|z| <= {limit:.3g} ({what}mean {mean:.6g}, sd {sd:.6g}, n {n})"
    failed = z > limit
    expected = base + mean if seasonal else level  # type: ignore[operator]
    change = abs(x / expected - 1) if expected else None
    if conf.relative_change is not None and change is not None:
        what = f"{lag} days before + the mean change" if seasonal else "mean"
        threshold += f"; |x / ({what}) - 1| <= {conf.relative_change:g}"
        failed = failed or change > conf.relative_change
    message = ""
    if failed and seasonal:
        message = (f"{x:.6g}, {target:+.6g} from {lag} days before, against "
                   f"a mean change of {mean:+.6g} (z {z:.2f})")  # fmt: skip
    elif failed:
        message = f"{x:.6g} against a mean of {mean:.6g} (z {z:.2f})"
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
        if any(v is None for v in today):
            why = "no bins today (the first day sets the reference edges)"
        elif days < conf.min_history:
            why = f"{days} past days of bins, {conf.min_history} needed"
        else:
            why = f"no value of {column} fell in a bin on the {days} past days"
        return Result(name, "anomaly", severity, None, threshold, SKIPPED, why)
    n, m = sum(today), sum(pooled)  # type: ignore[arg-type]
    if not n:  # every value null or not finite today, against past days' bins
        why = f"no finite value of {column} today, against {days} past days"
        return Result(name, "anomaly", severity, None, threshold, FAIL, why)
    added = 0.5 * conf.psi_bins  # every bin's count plus a half
    psi = population_stability(
        [(v + 0.5) / (n + added) for v in today],  # type: ignore[operator]
        [(v + 0.5) / (m + added) for v in pooled],
    )
    bound = psi_bound(conf, n, m)
    if bound > conf.psi_threshold:
        threshold = f"<= {bound:.3g} (sampling: {n:.0f} rows against {m:.0f})"
    failed = psi > bound
    message = f"the distribution of {column} shifted (PSI {psi:.3f})" if failed else ""
    return Result(name, "anomaly", severity, psi, threshold, FAIL if failed else PASS, message)


def psi_bound(conf: QualityConfig, n: float, m: float) -> float:
    """The PSI above which ``n`` rows binned today are a shift from the ``m`` of the window:
    ``psi_threshold``, or what sampling alone exceeds with the z rule's tail (0.27% a day at
    3 sigmas) when that is larger. Without a shift the PSI is about (1/n + 1/m) times a
    chi-square of bins - 1 degrees of freedom (Yurdakul, 2018), so a fixed 0.25 fails a
    clean day of 60 rows a fifth of the time (a real log's days: CDNOW's) and one of 200 or
    more rows almost never."""
    tail = 2 * stats.norm.sf(conf.sensitivity)
    sampling = (1 / n + 1 / m) * stats.chi2.isf(tail, conf.psi_bins - 1)
    return max(conf.psi_threshold, sampling)


def population_stability(p: Sequence[float], q: Sequence[float]) -> float:
    """sum (p - q) ln(p / q) over the bins, shares floored at PSI_FLOOR."""
    total = 0.0
    for a, b in zip(p, q, strict=True):
        a, b = max(a, PSI_FLOOR), max(b, PSI_FLOOR)
        total += (a - b) * math.log(a / b)
    return total
