import os
import re
from importlib.metadata import version
from pathlib import Path

import pytest

from sparklift.config import load_config
from sparklift.errors import ConfigError, SparkliftError
from sparklift.geo.experiment import load_experiment
from sparklift.session import delta_session_conf, local_cores

from .conftest import REPO


def test_defaults_and_project_config_validate():
    assert len(load_config(None).features.definitions) == 20
    conf = load_config(REPO / "conf" / "sparklift.yaml")
    assert conf.tables.names["user_activity"] == "user_activity"


def test_unknown_key_is_named(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("spark:\n  mastr: local[1]\n")
    with pytest.raises(ConfigError, match=r"spark\.mastr: unknown key"):
        load_config(f)


def test_wrong_type_is_named(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("generate:\n  users: lots\n")
    with pytest.raises(ConfigError, match=r"generate\.users: .*integer.*'lots'"):
        load_config(f)


def test_set_overrides_and_rejects_unknown_keys():
    conf = load_config(None, ["generate.users=123", "spark.conf={a.b: c}"])
    assert conf.generate.users == 123 and conf.spark.conf["a.b"] == "c"
    # Spark settings add to the defaults'; other mappings replace (another learner's params).
    assert conf.spark.conf["spark.sql.sources.parallelPartitionDiscovery.threshold"] == "4096"
    assert load_config(None, ["propensity.learner_params={}"]).propensity.learner_params == {}
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        load_config(None, ["generate.nope=1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["generate.users"])


def test_file_merges_over_defaults(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("tables:\n  base_path: /data/prod\n")
    conf = load_config(f)
    assert conf.tables.base_path == "/data/prod"
    assert conf.tables.names["zones"] == "zones"  # sibling keys kept


def test_feature_definitions_are_checked():
    bad = "[{name: r, agg: ratio, numerator: x, denominator: y}]"
    with pytest.raises(ConfigError, match="must be a feature defined above it"):
        load_config(None, [f"features.definitions={bad}"])
    with pytest.raises(ConfigError, match="takes exactly \\['column'\\]"):
        load_config(None, ["features.definitions=[{name: s, agg: sum}]"])


def test_model_artefacts_follow_the_warehouse(tmp_path: Path):
    moved = load_config(None, [f"tables.base_path={tmp_path}/wh"])
    assert moved.tables.models == f"{tmp_path}/wh/models"
    pinned = load_config(None, [f"tables.base_path={tmp_path}/wh", "tables.model_path=/m"])
    assert pinned.tables.models == "/m"


def test_delta_jars_choose_the_backend_in_one_line(tmp_path: Path):
    empty = load_config(None, [f"spark.delta_jars={tmp_path}"]).spark
    assert delta_session_conf(empty, "auto") == {}  # no jars: delta-rs
    assert delta_session_conf(empty, "deltars") == {}
    with pytest.raises(SparkliftError) as err:
        delta_session_conf(empty, "native")
    msg = str(err.value)
    assert "\n" not in msg and "scripts/setup.sh" in msg and str(tmp_path) in msg
    fetched = load_config(None).spark  # the jars scripts/setup.sh fetched into .delta/jars
    conf = delta_session_conf(fetched, "auto")
    jars = conf["spark.jars"].split(",")
    assert any(f"delta-spark_2.13-{version('delta-spark')}.jar" in j for j in jars)
    assert all(Path(j).is_file() for j in jars)
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert delta_session_conf(fetched, "deltars") == {}


def test_local_sessions_rebuild_delta_state_in_as_many_tasks_as_cores():
    """Delta's snapshot partitions follow a local master's cores (Delta's own 50 tasks per
    log replay cost seconds per small read or write on 2 cores); a cluster keeps Delta's."""
    cores = {"local": 1, "local[3]": 3, "local[4, 2]": 4, "local-cluster[2, 1, 1024]": 2}
    assert {m: local_cores(m) for m in cores} == cores
    assert local_cores("local[*]") == os.cpu_count()
    assert local_cores("spark://host:7077") is None and local_cores("yarn") is None


def test_quality_settings_that_would_silence_a_check_are_refused():
    with pytest.raises(ConfigError, match="min_history 20 is above window_days 14"):
        load_config(None, ["quality.min_history=20"])
    with pytest.raises(ConfigError, match=r"accepted\.arm: an empty list accepts no value"):
        load_config(None, ["quality.tables.allocations.accepted={arm: []}"])
    for key in ("psi_threshold", "relative_change", "sensitivity"):
        with pytest.raises(ConfigError, match=rf"quality\.{key}: Input should be a finite number"):
            load_config(None, [f"quality.{key}=.inf"])


def test_a_misspelt_checked_table_is_refused_in_one_short_line(tmp_path: Path):
    """A quality.tables entry that names no table would leave the real one on its defaults;
    a check across a section's keys prints its reason, not the whole section."""
    f = tmp_path / "c.yaml"
    f.write_text("quality:\n  tables:\n    uplift_score:\n      not_null: [model_id]\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert str(e.value).splitlines()[1] == (
        "  quality.tables: ['uplift_score'] name no table of tables.names; known: "
        + str(sorted(load_config(None).tables.names))
    )
    with pytest.raises(ConfigError) as e:
        load_config(None, ["quality.same_weekday=true"])
    line = str(e.value).splitlines()[1]
    assert line.startswith("  quality: season_days and same_weekday") and "{" not in line


@pytest.mark.parametrize(
    "sets,line",
    [
        ({"spending": "obf", "param": "2"}, "sequential.param: 'obf' takes no parameter (got 2)"),
        ({"spending": "pocock", "param": "1"}, "sequential.param: 'pocock' takes no parameter"),
        ({"spending": "power", "param": "-1"}, "sequential.param: 'power' needs rho > 0 (got -1)"),
        ({"spending": "hsd", "param": ".nan"}, "sequential.param: 'hsd' needs a finite parameter"),
        (
            {"futility": "{spending: power, param: 0}"},
            "sequential.futility.param: 'power' needs rho > 0 (got 0)",
        ),
    ],
)
def test_a_spending_parameter_the_function_does_not_take_is_refused_on_loading(
    tmp_path: Path, sets: dict[str, str], line: str
):
    """Checked when the config or the experiment file is read (exit 2, the key named), not
    first when the design computes its plan after the Spark work."""
    overrides = [f"design.sequential.{k}={v}" for k, v in sets.items()]
    with pytest.raises(ConfigError, match=rf"\n  design\.{re.escape(line)}") as e:
        load_config(None, overrides)
    assert e.value.exit_code == 2 and len(str(e.value).splitlines()) == 2  # only that key
    f = tmp_path / "e.yaml"
    section = ", ".join(f"{k}: {v}" for k, v in sets.items())
    f.write_text(
        "experiment_id: e\nvariants: [c, t]\nzones_per_variant: 4\nstart: 2026-03-01\n"
        f"end: 2026-03-14\nmetrics: [{{name: orders}}]\nseed: 1\nsequential: {{{section}}}\n"
    )
    with pytest.raises(ConfigError, match=rf"\n  {re.escape(line)}"):
        load_experiment(f, load_config(None).design)


def test_the_measurement_s_spending_parameter_is_checked_on_loading():
    """measure's looks spend alpha as the designs do: a parameter the function does not
    take is refused on loading, not first at an interim look after the Spark work."""
    line = r"\n  measure\.spending_param: 'obf' takes no parameter \(got 2\)"
    with pytest.raises(ConfigError, match=line):
        load_config(None, ["measure.spending=obf", "measure.spending_param=2"])
    with pytest.raises(ConfigError, match="'power' needs rho > 0"):
        load_config(None, ["measure.spending=power", "measure.spending_param=0"])
    assert load_config(None, ["measure.spending=hsd", "measure.spending_param=-2"])


def test_spending_parameters_the_functions_take_are_accepted():
    for spending, param in [("hsd", "0"), ("hsd", "1.5"), ("power", "2.5"), ("obf", "null")]:
        sets = [f"design.sequential.spending={spending}", f"design.sequential.param={param}"]
        assert load_config(None, sets).design.sequential.spending == spending
    futility = "design.sequential.futility={spending: power, param: 0.5}"
    assert load_config(None, [futility]).design.sequential.futility.param == 0.5
