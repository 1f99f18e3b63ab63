"""Table contracts: README's "Tables" equals the code's contracts, and ``Catalog.write``
writes every table through its contract (its partitioning; its columns or nothing)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from pyspark.sql.types import (
    BooleanType,
    ByteType,
    DateType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
)

from sparklift.config import load_config
from sparklift.contracts import CONTRACTS, TABLE_NAMES, contract
from sparklift.errors import InputError, SchemaMismatchError

ROOT = Path(__file__).resolve().parents[1]
D1 = dt.date(2026, 1, 1)


def readme_tables() -> dict[str, dict[str, object]]:
    """README's "Tables" section parsed: table -> grain, partitioning, key, columns, extra."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Tables\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    out = {}
    for line in rows:
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        name, grain, parts, key, columns, extra = cells
        listed = lambda cell: [] if cell == "-" else cell.split(", ")  # noqa: E731
        out[name.strip("`")] = {
            "grain": grain,
            "partition_by": listed(parts),
            "key": listed(key),
            "columns": [tuple(c.split(": ")) for c in listed(columns)],
            "extra": None if extra == "-" else extra,
        }
    return out


def test_readme_lists_every_contract_with_its_columns_partitioning_and_key():
    documented = readme_tables()
    assert list(documented) == list(CONTRACTS)
    for name, doc in documented.items():
        c = CONTRACTS[name]
        code_columns = [(f.name, f.dataType.simpleString()) for f in c.schema.fields]
        assert doc["columns"] == code_columns, name
        assert doc["partition_by"] == list(c.partition_by), name
        assert doc["key"] == list(c.key), name
        assert doc["extra"] == c.extra, name
        assert doc["grain"] == c.description, name


def test_every_configured_table_has_a_contract_and_partitions_by_partition_types():
    assert set(load_config().tables.names) == set(TABLE_NAMES)
    allowed = (DateType, StringType, IntegerType, LongType, ShortType, ByteType, BooleanType)
    for c in CONTRACTS.values():
        types = {f.name: f.dataType for f in c.schema.fields}
        assert all(isinstance(types[p], allowed) for p in c.partition_by), c.name
        assert set(c.partition_by) <= set(c.key), c.name  # a partition is a set of keys
    with pytest.raises(InputError, match="no contract for table 'nope'"):
        contract("nope")


def test_no_write_names_its_partitions_or_bypasses_the_contracts():
    """Acceptance: outside the Delta layer itself, sparklift writes every table through
    ``Catalog.write`` (its contract), never with partition literals."""
    offenders = []
    for path in [*(ROOT / "lib" / "sparklift").rglob("*.py"), *(ROOT / "scripts").rglob("*.py")]:
        if path.parent.name in ("tables", "contracts") and path.parent.parent.name == "sparklift":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"partition_by\s*=|write_uncontracted\(|\.create\(", line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert offenders == []


def test_write_partitions_as_the_contract_says(spark, catalog):
    scores = spark.createDataFrame(
        [(D1, 1, "NL", "V01", 0.5, 1.0, "m1")], contract("uplift_scores").schema
    )
    assert catalog.write("uplift_scores", scores) == 0
    assert catalog.partition_columns("uplift_scores") == ["run_date"]
    # An open table keeps its further columns.
    customers = spark.createDataFrame(
        [(D1, 7, "NL", 0.25)],
        "snapshot_date date, customer_id bigint, budget_group string, x1 double",
    )
    catalog.write("customers", customers)
    assert catalog.partition_columns("customers") == ["snapshot_date"]
    assert catalog.schema("customers").fieldNames() == [
        "snapshot_date",
        "customer_id",
        "budget_group",
        "x1",
    ]
    summary = spark.createDataFrame([], contract("allocation_summary").schema)
    catalog.write("allocation_summary", summary)
    assert catalog.partition_columns("allocation_summary") == ["run_date", "campaign_id"]


def test_write_casts_ids_of_another_integer_width_and_refuses_what_does_not_fit(spark, catalog):
    """Upstream ids often arrive as bigint: they take the contract's int, exactly."""
    zones = spark.createDataFrame(
        [(2**31 - 1, "R01", True), (-(2**31), "R02", False)],
        "zone_id bigint, region string, eligible boolean",
    )
    catalog.write("zones", zones)
    assert catalog.schema("zones")["zone_id"].dataType == IntegerType()
    assert sorted(r.zone_id for r in catalog.read("zones").collect()) == [-(2**31), 2**31 - 1]
    too_big = spark.createDataFrame([(2**31, "R03", True)], zones.schema)
    with pytest.raises(InputError, match=r"^table zones: zone_id = 2147483648 does not fit"):
        catalog.write("zones", too_big)
    assert catalog.read("zones").count() == 2


def test_write_refuses_a_frame_without_the_contracts_columns_before_writing(spark, catalog):
    zones = spark.createDataFrame(
        [("z1", "R01", 3)], "zone_id string, region string, population int"
    )
    with pytest.raises(SchemaMismatchError) as err:
        catalog.write("zones", zones)
    msg = str(err.value)
    assert msg.startswith("cannot write to table zones under its contract:")
    assert "missing columns ['eligible']" in msg and "extra columns ['population']" in msg
    assert "zone_id is string, expected int" in msg
    assert not catalog.exists("zones")
    # An open table still needs its own columns.
    features_only = spark.createDataFrame(
        [(D1, 7, 0.25)], "snapshot_date date, id bigint, x1 double"
    )
    with pytest.raises(
        SchemaMismatchError, match=r"missing columns \['customer_id', 'budget_group'\]"
    ):
        catalog.write("customers", features_only)
    assert not catalog.exists("customers")
