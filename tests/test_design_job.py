"""`sparklift design` end to end on generated data: tables written, bad input refused."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyfixest as pf
import pytest
import yaml
from deltalake import DeltaTable
from linearmodels import PanelOLS
from pyspark.sql import SparkSession

from sparklift.cli import main
from sparklift.config import load_config
from sparklift.errors import InputError
from sparklift.jobs import JobContext, published_designs, write_records
from sparklift.jobs.analyze import load_design
from sparklift.tables import Catalog
from sparklift.tables.local import read_pandas

RUN_DATE = "2026-04-30"
GEO_TABLES = ("geo_experiments", "geo_assignments", "geo_design_checks")


@pytest.fixture(scope="module")
def warehouse(spark, tmp_path_factory) -> Path:
    wh = tmp_path_factory.mktemp("design") / "wh"
    common = ["--run-date", RUN_DATE, "--set", f"tables.base_path={wh}"]
    scale = ["--users", "8000", "--zones", "60", "--days", "42", "--customers", "100"]
    assert main(["generate", *common, *scale, "--campaign-rows", "100"]) == 0
    assert main(["features", *common, "--start", "2026-04-10", "--end", RUN_DATE]) == 0
    return wh


def experiment(tmp_path: Path, **over) -> str:
    spec = {
        "experiment_id": "exp_a",
        "variants": ["control", "treat"],
        "zones_per_variant": 8,
        "start": "2026-05-04",
        "end": "2026-05-17",
        "pre_days": 14,
        "metrics": [{"name": "orders"}, {"name": "gmv"}, {"name": "visits", "primary": False}],
        "covariates": ["tenure_days"],
        "margin": 0.5,
        "seed": 3,
        "exclude_zones": [1, 2],
    } | over
    path = tmp_path / f"{spec['experiment_id']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def design(wh: Path, path: str, *extra: str) -> int:
    return main(["design", "--experiment", path, "--run-date", RUN_DATE,
                 "--set", f"tables.base_path={wh}", *extra])  # fmt: skip


def table(wh: Path, name: str) -> pd.DataFrame:
    return read_pandas(str(wh / name))


def versions(wh: Path) -> dict[str, int | None]:
    out = {}
    for name in GEO_TABLES:
        try:
            out[name] = DeltaTable(str(wh / name)).version()
        except Exception:
            out[name] = None
    return out


@pytest.mark.e2e
def test_design_writes_matched_randomized_checked_design(warehouse, tmp_path, spark, capsys):
    assert design(warehouse, experiment(tmp_path)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "accepted" and summary["zones"] == 16
    exp = table(warehouse, "geo_experiments").set_index("experiment_id").loc["exp_a"]
    assert exp["status"] == "accepted" and list(exp["variants"]) == ["control", "treat"]
    assert exp["left_out"]  # reasons recorded
    assert 0 < exp["explained_variance"] <= 1 and exp["match_distance_ratio"] < 0.8

    a = table(warehouse, "geo_assignments")
    a = a[a["experiment_id"] == "exp_a"]
    zones = table(warehouse, "zones").set_index("zone_id")
    assert len(a) == 16 and a["zone_id"].is_unique
    assert zones.loc[a["zone_id"], "eligible"].all() and not a["zone_id"].isin([1, 2]).any()
    assert a.groupby("group_id")["variant"].apply(sorted).tolist() == [["control", "treat"]] * 8

    checks = table(warehouse, "geo_design_checks")
    checks = checks[checks["experiment_id"] == "exp_a"].set_index("metric")
    assert sorted(checks.index) == ["gmv", "orders", "visits"]
    assert checks["equivalent"].all() and (checks["tost_p"] < 0.05).all()
    assert (checks["mde"] > 0).all() and checks["power"].between(0, 1).all()
    # The baseline is the mean per user-day of the chosen zones over the history window.
    act = table(warehouse, "user_activity")
    act = act[act["zone_id"].isin(a["zone_id"]) & (pd.to_datetime(act["date"]) > "2026-04-02")]
    assert checks.loc["orders", "baseline_mean"] == pytest.approx(act["orders"].mean())
    assert checks.loc["orders", "n_obs"] == len(act) and checks.loc["orders", "n_days"] == 28
    # The sequential plan: weekly looks, alpha split over the two primary metrics; the
    # information at the first look from the AA fit at its 7 days against the full 14.
    assert list(exp["look_dates"]) == [dt.date(2026, 5, 10), dt.date(2026, 5, 17)]
    assert exp["alpha_per_test"] == pytest.approx(0.025)
    # Decisions' inference is the zone jackknife (CV3) with t(G - 1): the maximum information
    # is 1 / its variance on the AA window, against pyfixest's CRV3 (a refit per left-out zone)
    # on the user-day rows: d = treated zone x the last 14 days (the pseudo post period).
    act = act.merge(a[["zone_id", "variant"]], on="zone_id")
    act["d"] = ((act["variant"] == "treat") & (pd.to_datetime(act["date"]) >= "2026-04-17")) * 1.0
    for metric in ("orders", "gmv"):
        ref = pf.feols(
            f"{metric} ~ d + tenure_days | zone_id + date",
            data=act,
            vcov={"CRV3": "zone_id"},
            ssc=pf.ssc(k_adj=False, G_adj=False),
            fixef_tol=1e-14,
        )
        se = np.sqrt(15 / 16) * ref.se()["d"]
        assert checks.loc[metric, "max_information"] == pytest.approx(1 / se**2, rel=1e-6)
    for r in checks.itertuples():
        assert 0 < r.planned_fractions[0] < 1 and r.planned_fractions[1] == 1.0
        assert min(r.planned_upper) > 2.2414  # above the fixed bound z_{1 - 0.025 / 2}
        assert list(r.planned_lower) == pytest.approx([-u for u in r.planned_upper])
        assert 1 < r.inflation < 1.05 and r.sequential_power < r.power
        assert r.decision_df == 15 and r.sequential_mde > r.mde  # G - 1 and the spending
        assert 13 < r.expected_days_h0 <= 14 and 7 < r.expected_days_target < 14

    # Same seed, same design; a second, overlapping experiment avoids these zones.
    assert design(warehouse, experiment(tmp_path)) == 0
    again = table(warehouse, "geo_assignments")
    again = again[again["experiment_id"] == "exp_a"]
    assert again["design_id"].nunique() == 1 and set(again["design_id"]) != set(a["design_id"])
    pd.testing.assert_frame_equal(
        again.sort_values("zone_id").reset_index(drop=True).drop(columns="design_id"),
        a.sort_values("zone_id").reset_index(drop=True).drop(columns="design_id"),
    )
    assert design(warehouse, experiment(tmp_path, experiment_id="exp_b", seed=9)) == 0
    b = table(warehouse, "geo_assignments")
    assert not set(b.loc[b["experiment_id"] == "exp_b", "zone_id"]) & set(a["zone_id"])

    # Once a look of exp_a is recorded, its plan is fixed: another plan is refused.
    catalog = Catalog(spark, load_config(overrides=[f"tables.base_path={warehouse}"]).tables)
    look = {"experiment_id": "exp_a", "run_date": dt.date(2026, 5, 10), "look": 1,
            "metric": "orders", "variant": "treat", "decision_point": True}  # fmt: skip
    write_records(catalog, "geo_sequential", [look])
    before = versions(warehouse)
    capsys.readouterr()
    assert design(warehouse, experiment(tmp_path, sequential={"looks": 4})) == 2
    err = capsys.readouterr().err
    assert "its sequential looks began on 2026-05-10" in err and "a plan is fixed" in err
    assert versions(warehouse) == before
    # Once analysed, its assignment is fixed even with the same plan: a new one would be
    # fitted over the days run under the old one. A re-run (same inputs, same seed) is not.
    result = {"experiment_id": "exp_b", "run_date": dt.date(2026, 5, 10), "metric": "orders",
              "variant": "treat", "term": "att"}  # fmt: skip
    write_records(catalog, "geo_results", [result])
    before = versions(warehouse)
    assert design(warehouse, experiment(tmp_path, experiment_id="exp_b", seed=11)) == 2
    err = capsys.readouterr().err
    assert "experiment exp_b has been analysed since 2026-05-10" in err
    assert "its assignment is fixed" in err
    assert versions(warehouse) == before
    assert design(warehouse, experiment(tmp_path, experiment_id="exp_b", seed=9)) == 0
    none = catalog.read("geo_results").limit(0)  # the later tests design again
    catalog.write("geo_results", none, mode="replace", replace_where={"experiment_id": "exp_b"})
    # Started on or before the run date, not analysed yet: its zones are being treated, so
    # its assignment is fixed too.
    started = {"experiment_id": "exp_b", "start": RUN_DATE, "end": "2026-05-13"}
    before = versions(warehouse)
    capsys.readouterr()
    assert design(warehouse, experiment(tmp_path, **started, seed=11)) == 2
    err = capsys.readouterr().err
    assert f"experiment exp_b started on {RUN_DATE}, on or before the run date {RUN_DATE}" in err
    assert versions(warehouse) == before


@pytest.mark.e2e
def test_design_with_cuped_reports_mde_and_zones_with_and_without(warehouse, tmp_path):
    """The AA fit with CUPED's covariate (each user's mean per active day over the 14 days
    before the history window) equals linearmodels' PanelOLS on the user-day rows with the
    covariate computed in pandas; the design reports the unadjusted figures beside."""
    spec = {"experiment_id": "exp_cuped", "start": "2026-07-01", "end": "2026-07-14"}
    spec |= {"variance_reduction": "cuped", "covariate_window": {"days": 14}}
    assert design(warehouse, experiment(tmp_path, **spec)) == 0
    a = table(warehouse, "geo_assignments")
    a = a[a["experiment_id"] == "exp_cuped"]
    checks = table(warehouse, "geo_design_checks")
    checks = checks[checks["experiment_id"] == "exp_cuped"].set_index("metric")
    assert (checks["variance_reduction"] == "cuped").all()
    act = table(warehouse, "user_activity").merge(a[["zone_id", "variant"]], on="zone_id")
    act["date"] = pd.to_datetime(act["date"])
    window = act[act["date"].between("2026-03-20", "2026-04-02")]
    rows = act[act["date"] > "2026-04-02"].copy()
    rows["d"] = ((rows["variant"] == "treat") & (rows["date"] >= "2026-04-17")) * 1.0
    rows["no_history"] = (~rows["user_id"].isin(window["user_id"])) * 1.0
    assert 0.02 < rows["no_history"].mean() < 0.5  # new users, flagged
    for metric in ("orders", "gmv", "visits"):
        mean = window.groupby("user_id")[metric].mean().rename("cuped")
        ref = rows.drop(columns="cuped", errors="ignore").merge(mean, on="user_id", how="left")
        ref["cuped"] = ref["cuped"].fillna(0.0)
        pdf = ref.set_index(["user_id", "date"])
        for exog, column in ((["d", "tenure_days", "cuped", "no_history"], "aa_se"),
                             (["d", "tenure_days"], "aa_se_unadjusted")):  # fmt: skip
            lm = PanelOLS(pdf[metric], pdf[exog], time_effects=True, other_effects=pdf[["zone_id"]])
            res = lm.fit(cov_type="clustered", clusters=pdf[["zone_id"]], debiased=True)
            assert checks.loc[metric, column] == pytest.approx(res.std_errors["d"], rel=1e-8)
    # With 8 zones per variant the adjustment need not pay (here CUPED's SE is larger on
    # orders): the design shows both, each from its own fit (same df: MDE ratio = SE ratio).
    for r in checks.itertuples():
        assert r.se_reduction == pytest.approx(1 - r.aa_se / r.aa_se_unadjusted)
        ratio = r.mde_relative / r.mde_relative_unadjusted
        assert ratio == pytest.approx(r.aa_se / r.aa_se_unadjusted, rel=1e-6)
        for mde, zones in ((r.mde_relative, r.zones_needed),
                           (r.mde_relative_unadjusted, r.zones_needed_unadjusted)):  # fmt: skip
            assert zones == max(2, int(np.ceil(8 * (mde / 0.05) ** 2)))


@pytest.mark.e2e
def test_failed_aa_check_rejects_unless_accepted_anyway(warehouse, tmp_path, capsys):
    path = experiment(
        tmp_path, experiment_id="exp_tight", margin=0.0001, start="2026-09-01", end="2026-09-10"
    )
    assert design(warehouse, path) == 5
    assert "AA check not equivalent on primary metric(s): orders/treat" in capsys.readouterr().err
    exp = table(warehouse, "geo_experiments").set_index("experiment_id")
    assert exp.loc["exp_tight", "status"] == "rejected"
    assert "TOST p" in exp.loc["exp_tight", "reason"]
    assert design(warehouse, path, "--accept-anyway") == 0
    exp = table(warehouse, "geo_experiments").set_index("experiment_id")
    assert exp.loc["exp_tight", "status"] == "accepted_anyway"
    # A rejected design that would have started is not run: another assignment may follow.
    late = {"experiment_id": "exp_late", "margin": 0.0001, "start": RUN_DATE, "end": "2026-05-13"}
    assert design(warehouse, experiment(tmp_path, **late)) == 5
    capsys.readouterr()
    assert design(warehouse, experiment(tmp_path, **late, seed=8)) == 5  # designed, not refused
    assert "its assignment is fixed" not in capsys.readouterr().err


@pytest.mark.e2e
@pytest.mark.parametrize(
    "over,code,message",
    [
        ({"zones_per_variant": 40}, 2, "40 x 2 = 80 zones needed, only"),
        ({"variants": ["control"]}, 2, "N >= 2"),
        ({"margin": 0}, 2, "margin: Input should be greater than 0"),
        ({"lookback_days": 30}, 3, "lack features on 9 day(s) of the lookback"),
        ({"pre_days": 40}, 3, "no rows on"),
        ({"metrics": [{"name": "basket"}]}, 2, "no columns ['basket']"),
        ({"exclude_zones": [999]}, 2, "zones [999] are not in table zones"),
        ({"sequential": {"looks": ["2026-05-10", "2026-05-20"]}}, 2, "'2026-05-20'] are outside"),
        ({"sequential": {"spending": "wang"}}, 2, "sequential.spending: Input should be 'obf'"),
        ({"alpha": 0.6}, 2, "alpha: Input should be less than or equal to 0.5"),
        (
            {"variance_reduction": "cuped", "covariate_window": {"days": 7, "end": "2026-05-01"}},
            2,
            "covariate_window.end 2026-05-01 is not before the pre-period",
        ),
        (
            {"variance_reduction": "cuped", "covariate_window": {"days": 30}},
            2,
            "no rows on 2026-03-04, the first day of the cuped covariate window",
        ),
        ({"variance_reduction": "cupac"}, 2, "the first day of the CUPAC training window"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(
    warehouse, tmp_path, capsys, over, code, message
):
    before = versions(warehouse)
    assert design(warehouse, experiment(tmp_path, experiment_id="exp_bad", **over)) == code
    assert message in capsys.readouterr().err
    assert versions(warehouse) == before


class Killed(BaseException):
    """The driver dies: nothing after this point runs, not even clean-up."""


@pytest.mark.e2e
def test_killed_redesign_never_mixes_two_designs(warehouse, tmp_path, monkeypatch):
    """A re-design killed after each of its commits: readers (analyze's load_design) see
    the old design whole, or the new one whole, never the new assignments under the old
    experiment row (which a design written table by table used to give). The order of the
    commits is what is tested: each commit's own atomicity, per backend, is
    tests/test_native_process.py's."""
    backend, month = "native", "01"
    # One metric and one look: what is tested is how a design is published, not its plan.
    window = {
        "start": f"2027-{month}-04",
        "end": f"2027-{month}-17",
        "metrics": [{"name": "orders"}],
        "sequential": None,
    }
    eid = f"exp_kill_{backend}"
    common = ["--set", f"tables.backend={backend}"]
    assert design(warehouse, experiment(tmp_path, experiment_id=eid, **window), *common) == 0
    old = published_design(warehouse, eid, backend)
    assert old[0] == 3

    redesign = experiment(tmp_path, experiment_id=eid, seed=9, **window)
    writes = published_designs.write_records
    for commits in (1, 3):  # killed after the assignments (before the checks), the publish

        def dies(*args, _calls=[], _after=commits, **kwargs):  # noqa: B006 (one per loop)
            if len(_calls) == _after:
                raise Killed
            _calls.append(args[1])
            return writes(*args, **kwargs)

        def dead(*_a, **_k):
            raise Killed

        monkeypatch.setattr(published_designs, "write_records", dies)
        monkeypatch.setattr(published_designs, "drop_designs", lambda *a, **k: None)  # no clean-up
        monkeypatch.setattr(published_designs, "superseded", dead)  # killed right after publishing
        with pytest.raises(Killed):
            design(warehouse, redesign, *common)
        seed, assignment = published_design(warehouse, eid, backend)
        if commits < 3:
            assert seed == 3 and assignment.equals(old[1]), commits
        else:
            assert seed == 9 and not assignment.equals(old[1])
            new = assignment
    monkeypatch.undo()

    # The next design removes the one it replaced; the one killed before publishing and the
    # one whose clean-up was killed stay (unread) until abandoned.
    assert design(warehouse, redesign, *common) == 0
    seed, assignment = published_design(warehouse, eid, backend)
    assert seed == 9 and assignment.equals(new)
    rows = table(warehouse, "geo_assignments")
    assert rows.loc[rows["experiment_id"] == eid, "design_id"].nunique() == 3


def published_design(wh: Path, experiment_id: str, backend: str) -> tuple[int, pd.DataFrame]:
    """What analyze reads: the experiment's seed and its assignment, sorted."""
    conf = load_config(overrides=[f"tables.base_path={wh}", f"tables.backend={backend}"])
    spark = SparkSession.getActiveSession()
    ctx = JobContext(spark, conf, Catalog(spark, conf.tables), dt.date.fromisoformat(RUN_DATE))
    design = load_design(ctx, experiment_id)
    spec, assignment = design.spec, design.assignment
    return spec.seed, assignment.sort_values("zone_id").reset_index(drop=True)


def test_design_tables_from_before_design_ids_are_refused_clearly(spark, catalog):
    old = spark.createDataFrame([("exp_old", "accepted")], "experiment_id string, status string")
    catalog.write_uncontracted("geo_experiments", old, partition_by=["experiment_id"])
    with pytest.raises(InputError, match=r"no design_id column .* move geo_experiments"):
        published_designs.read_experiments(catalog)
