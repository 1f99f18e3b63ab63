from pathlib import Path

import pytest

from sparklift.config import load_config
from sparklift.errors import ConfigError

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
    assert conf.generate.users == 123 and conf.spark.conf == {"a.b": "c"}
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
