"""Paths and errors (issue 15, defects 6 and 7): a symlinked warehouse, what is at a table's
path when it is not a Delta table, an unwritable warehouse, a truncated log, bad ``--set``
values and experiment/campaign files (refused before Spark starts), and the allocation's
input errors naming one offending row. Table-level cases run on both backends.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sparklift import cli
from sparklift.allocation.distributed import Problem, solve
from sparklift.config import load_config
from sparklift.errors import (
    ConfigError,
    InputError,
    InputNotReadyError,
    SparkliftError,
)
from sparklift.tables import backends as backends_module

from .conftest import REPO
from .test_tables import D1, D2, frame, make_catalog

BACKENDS = ["native", "deltars"]
CONF = str(REPO / "conf" / "sparklift.yaml")


class SparkStarted(BaseException):
    """Raised by the stand-in for build_session: the CLI got as far as starting Spark (not
    an Exception, which the CLI would log as an internal error and exit 1 on)."""


@pytest.fixture
def no_spark(monkeypatch):
    """``sparklift.cli.main`` must fail before it builds a Spark session."""

    def refuse(*args, **kwargs):
        raise SparkStarted("build_session was called")

    monkeypatch.setattr(cli, "build_session", refuse)


def tables_at(base: Path | str, **sets: str):
    return load_config(None, [f"tables.base_path={base}", *(f"{k}={v}" for k, v in sets.items())])


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("error: ")]


# --- --set and spec files: refused before Spark starts (no session needed) ---------------


def test_malformed_set_value_exits_2_naming_the_set(no_spark, capsys):
    assert cli.main(["features", "--config", CONF, "--set", "spark.conf={a: [1"]) == 2
    err = capsys.readouterr().err
    (line,) = error_lines(err)
    assert "--set 'spark.conf={a: [1'" in line and "not valid YAML" in line
    assert "Traceback" not in err


def test_validation_error_from_a_set_names_the_set_not_the_file(no_spark, capsys):
    assert cli.main(["features", "--config", CONF, "--set", "spark.shuffle_partitions=zero"]) == 2
    err = capsys.readouterr().err
    assert "invalid configuration (--set spark.shuffle_partitions=zero)" in err
    assert "sparklift.yaml" not in err
    # A file's error and a --set's in one run: each line says where its value came from.
    with pytest.raises(ConfigError) as e:
        load_config(CONF, ["generate.users=x", "generate.zones=1"])
    msg = str(e.value)
    assert "--set generate.users=x" in msg and "--set generate.zones=1" in msg
    assert "generate.users: " in msg and "[from --set generate.users=x]" in msg


def test_set_takes_every_key_a_config_file_takes():
    """--set keys are those of the config's models, not only those the defaults spell out:
    a table's checks not in the defaults, a whole table's, an optional section left null
    (allocate.fallback) or absent (design.sequential.futility); truly unknown keys are
    refused naming the keys known there, and a key below a value is no section."""
    config = load_config(None, [
        "quality.tables.zones.ranges={region: [0, 1]}",
        "quality.tables.zones.severity={anomaly: error}",
        "quality.tables.geo_results.not_null=[x]",
        "allocate.fallback.max_age_days=2",
        "design.sequential.futility.spending=pocock",
    ])  # fmt: skip
    zones = config.quality.tables["zones"]
    assert zones.ranges == {"region": (0.0, 1.0)} and zones.severity == {"anomaly": "error"}
    assert zones.not_null == ["zone_id", "region", "eligible"]  # the defaults' stay
    assert config.quality.tables["geo_results"].not_null == ["x"]
    assert config.allocate.fallback is not None and config.allocate.fallback.max_age_days == 2
    futility = config.design.sequential.futility
    assert futility is not None and futility.spending == "pocock" and futility.beta is None
    with pytest.raises(
        ConfigError,
        match=r"--set quality.tables.zones.rangs: unknown key "
        r"'rangs' in quality.tables.zones \(known: \['accepted', 'anomaly', "
        r"'date_column', 'not_null', 'ranges', 'references', 'severity'\]\)",
    ):
        load_config(None, ["quality.tables.zones.rangs={region: [0, 1]}"])
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'max_age' in allocate.fallback "
        r"\(known: \['max_age_days'\]\)",
    ):
        load_config(None, ["allocate.fallback.max_age=2"])
    with pytest.raises(ConfigError, match=r"--set spark.master.x: spark.master is not a config"):
        load_config(None, ["spark.master.x=1"])
    with pytest.raises(ConfigError, match=r"quality.tables: \['nope'\] name no table"):
        load_config(None, ["quality.tables.nope.not_null=[x]"])


DEMO_EXPERIMENT = REPO / "conf" / "experiments" / "demo_banner.yaml"
DEMO_CAMPAIGN = REPO / "conf" / "campaigns" / "demo_winback.yaml"


@pytest.mark.parametrize(
    "job, flag, demo, change, message",
    [
        ("design", "--experiment", DEMO_EXPERIMENT, {"variants": ["only"]}, "N >= 2 variants"),
        ("design", "--experiment", None, None, "does not exist"),
        ("allocate", "--campaign", DEMO_CAMPAIGN, {"budgets": {"NL": -1}}, "budgets must be >= 0"),
        ("allocate", "--campaign", DEMO_CAMPAIGN, "budgets: [\n", "not valid YAML"),
    ],
)
def test_bad_experiment_or_campaign_file_fails_before_spark(
    no_spark, tmp_path, capsys, job, flag, demo, change, message
):
    spec = tmp_path / "spec.yaml"
    if isinstance(change, str):
        spec.write_text(change)
    elif demo is not None:
        spec.write_text(yaml.safe_dump({**yaml.safe_load(demo.read_text()), **change}))
    assert cli.main([job, "--config", CONF, flag, str(spec)]) == 2
    err = capsys.readouterr().err
    (line,) = error_lines(err)
    assert str(spec) in line and message in err


def test_valid_spec_files_get_as_far_as_spark(no_spark):
    with pytest.raises(SparkStarted):
        cli.main(["design", "--config", CONF, "--experiment", str(DEMO_EXPERIMENT)])
    with pytest.raises(SparkStarted):
        cli.main(["allocate", "--config", CONF, "--campaign", str(DEMO_CAMPAIGN)])


def test_unwritable_directory_is_named_up_front(tmp_path, monkeypatch):
    from sparklift.tables.diagnose import check_writable

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(InputError, match=f"{blocker} is not a directory"):
        check_writable("zones", f"{blocker}/wh/zones")
    # What a permission problem or a read-only filesystem looks like to the check (as root,
    # the only way to have one here).
    real_access = os.access

    def access(path, mode, **kw):
        return False if str(path) == str(tmp_path) else real_access(path, mode, **kw)

    monkeypatch.setattr(os, "access", access)
    with pytest.raises(InputError) as err:
        check_writable("zones", str(tmp_path / "wh" / "zones"))
    assert err.value.exit_code == 2
    assert f"directory {tmp_path} is not writable" in str(err.value)
    assert "\n" not in str(err.value)


# --- tables, on both backends -------------------------------------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
def test_symlinked_base_path_reads_and_writes(spark, tmp_path, kind):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    via_link = make_catalog(spark, tables_at(tmp_path / "link").tables, kind)
    assert via_link.path("user_activity") == str(real / "user_activity")
    via_link.write_uncontracted("user_activity", frame(spark, [D1, D2]), partition_by=["date"])
    assert via_link.read("user_activity").count() == 60
    assert via_link.read("user_activity", where=[("date", "=", D2)]).count() == 30
    assert via_link.count("user_activity", where=[("date", "=", D1)]) == 30
    # A table written through the real path, read through the link (and the reverse).
    direct = make_catalog(spark, tables_at(real).tables, kind)
    direct.write_uncontracted("zones", frame(spark, [D1], n=3), partition_by=["date"])
    assert via_link.read("zones").count() == 3
    assert direct.read("user_activity").count() == 60
    # A table directory (not the base path) that is a symbolic link.
    os.rename(real / "zones", tmp_path / "elsewhere")
    (real / "zones").symlink_to(tmp_path / "elsewhere")
    assert via_link.read("zones", where=[("date", "=", D1)]).count() == 3
    assert via_link.count("zones") == 3


@pytest.mark.parametrize("kind", BACKENDS)
def test_parquet_directory_where_a_table_belongs_is_bad_input(spark, tmp_path, kind):
    catalog = make_catalog(spark, tables_at(tmp_path / "wh").tables, kind)
    zones = catalog.path("zones")
    spark.range(3).write.parquet(zones)
    with pytest.raises(InputError) as err:
        catalog.read("zones")
    assert err.value.exit_code == 2
    msg = str(err.value)
    assert f"table zones at {zones} is a directory of Parquet files" in msg
    assert "not a Delta table (no _delta_log)" in msg and "\n" not in msg
    with pytest.raises(InputError, match="is a file, not a Delta table"):
        Path(catalog.path("vouchers")).write_text("not a table")
        catalog.schema("vouchers")
    # Only empty directories (what a failed first write leaves): still "not ready yet".
    os.makedirs(os.path.join(catalog.path("customers"), "date=2026-01-01"))
    with pytest.raises(InputNotReadyError, match="table customers does not exist"):
        catalog.read("customers")


@pytest.mark.parametrize("kind", BACKENDS)
def test_truncated_newest_log_file_is_named(spark, tmp_path, kind):
    catalog = make_catalog(spark, tables_at(tmp_path / "wh").tables, kind)
    catalog.write_uncontracted("user_activity", frame(spark, [D1]), partition_by=["date"])
    catalog.write_uncontracted("user_activity", frame(spark, [D2], n=3))
    newest = Path(catalog.path("user_activity")) / "_delta_log" / f"{1:020d}.json"
    text = newest.read_text()
    newest.write_text(text[: len(text) // 2])
    with pytest.raises(SparkliftError) as err:
        catalog.read("user_activity")
    msg = str(err.value)
    assert "table user_activity" in msg and f"log file {newest}" in msg
    assert "truncated or corrupt" in msg and "\n" not in msg


@pytest.mark.parametrize("kind", BACKENDS)
def test_unwritable_base_path_exits_2_in_one_line(spark, tmp_path, capsys, kind):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    tiny = {
        "tables.base_path": f"{blocker}/wh",
        "tables.backend": kind,
        "generate.users": "200",
        "generate.zones": "10",
        "generate.days": "5",
        "generate.customers": "50",
        "generate.campaign_rows": "50",
        "generate.geo_effect.zones": "2",
    }
    sets = [a for k, v in tiny.items() for a in ("--set", f"{k}={v}")]
    assert cli.main(["generate", "--config", CONF, "--run-date", "2026-01-10", *sets]) == 2
    err = capsys.readouterr().err
    (line,) = error_lines(err)
    assert f"cannot write table zones at {blocker}/wh/zones" in line
    assert "Traceback" not in err
    assert not (tmp_path / "wh").exists()
    if os.geteuid() != 0:  # a real permission problem (root may write anywhere)
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        catalog = make_catalog(spark, tables_at(locked).tables, kind)
        with pytest.raises(InputError, match=f"directory {locked} is not writable"):
            catalog.write_uncontracted("zones", frame(spark, [D1]))


def test_clean_up_failure_does_not_hide_the_write_error(spark, tmp_path, monkeypatch):
    catalog = make_catalog(spark, tables_at(tmp_path / "wh").tables, "deltars")
    df = frame(spark, [D1])

    def fail(batches):
        raise RuntimeError("boom: the write's own error")
        yield  # pragma: no cover

    def broken_sweep(*args):
        raise PermissionError("clean-up failed too")

    monkeypatch.setattr(backends_module.delta_commit, "sweep_write", broken_sweep)
    with pytest.raises(Exception, match="boom: the write's own error"):
        catalog.write_uncontracted("zones", df.mapInArrow(fail, df.schema))


# --- allocation input: one offending key ----------------------------------------------------


def test_uplift_scores_errors_name_an_offending_row(spark):
    n, vouchers = 20, ["V1", "V2"]
    rows = pd.DataFrame(
        {
            "customer_id": np.repeat(np.arange(n, dtype=np.int64), 2),
            "budget_group": "NL",
            "voucher_id": vouchers * n,
            "uplift_objective": 0.5,
            "uplift_cost": 1.0,
        }
    )
    problem = Problem(vouchers, {"NL": 5.0})
    dup = pd.concat([rows, rows.iloc[[13]]])  # customer 6, voucher V2
    with pytest.raises(InputError) as err:
        solve(spark.createDataFrame(dup), problem).release()
    assert "1 duplicate (customer_id, voucher_id) rows" in str(err.value)
    assert "e.g. customer_id=6, voucher_id='V2', rows=2" in str(err.value)
    nan = rows.assign(uplift_objective=np.where(rows.index == 9, np.nan, 0.5))  # customer 4, V2
    with pytest.raises(InputError) as err:
        solve(spark.createDataFrame(nan), problem).release()
    assert "scores that are null, NaN or infinite" in str(err.value)
    assert "e.g. customer_id=4, voucher_id='V2', uplift_objective=None" in str(err.value)
