"""Generate a small data set, run the features job through the CLI, check it with pandas."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

from sparklift.cli import main
from sparklift.tables.local import read_pandas

RUN_DATE = "2026-06-30"


def expected_features(warehouse: Path, start: str, end: str) -> pd.DataFrame:
    """Totals per zone and day straight from the Delta files, with pandas."""
    activity = read_pandas(str(warehouse / "user_activity"))
    activity["date"] = pd.to_datetime(activity["date"]).dt.date.astype(str)
    activity = activity[(activity["date"] >= start) & (activity["date"] <= end)]
    return activity.groupby(["date", "zone_id"]).agg(
        active_users=("user_id", "size"),
        visits=("visits", "sum"),
        orders=("orders", "sum"),
        gmv=("gmv", "sum"),
        new_users=("tenure_days", lambda s: int((s < 30).sum())),
    )


@pytest.mark.e2e
def test_generate_then_features_matches_pandas(spark, tmp_path: Path, capsys):
    warehouse = tmp_path / "wh"
    common = ["--run-date", RUN_DATE, "--set", f"tables.base_path={warehouse}"]
    scale = [
        "--users",
        "3000",
        "--zones",
        "25",
        "--days",
        "21",
        "--customers",
        "500",
        "--campaign-rows",
        "800",
    ]
    assert main(["generate", *common, *scale]) == 0
    summary = json.loads(capsys.readouterr().out)
    truth = json.loads((warehouse / "generator_truth.json").read_text())
    assert truth["last_date"] == RUN_DATE and summary["zones"] == 25

    assert main(["features", *common, "--start", "2026-06-20", "--end", RUN_DATE]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == 25 * 11 and out["version"] == 0

    got = read_pandas(str(warehouse / "zone_day_features"))
    got["date"] = pd.to_datetime(got["date"]).dt.date.astype(str)
    assert len(got) == 25 * 11 and got.groupby("date").size().eq(25).all()
    want = expected_features(warehouse, "2026-06-20", RUN_DATE)
    merged = got.set_index(["date", "zone_id"]).join(want, rsuffix="_pd").fillna(0)
    for col in ("active_users", "visits", "orders", "gmv"):
        assert merged[col].to_numpy() == pytest.approx(merged[f"{col}_pd"].to_numpy())
    new_share = merged["new_users"] / merged["active_users"].where(merged["active_users"] > 0)
    assert merged["new_user_share"].to_numpy() == pytest.approx(new_share.fillna(0).to_numpy())

    # Re-running one date replaces just that partition, in one commit, with equal content.
    assert main(["features", *common]) == 0
    again = DeltaTable(str(warehouse / "zone_day_features"))
    assert again.version() == 1
    cols = list(got.columns)
    a = read_pandas(str(warehouse / "zone_day_features"))
    a["date"] = pd.to_datetime(a["date"]).dt.date.astype(str)
    pd.testing.assert_frame_equal(
        a.sort_values(["date", "zone_id"])[cols].reset_index(drop=True),
        got.sort_values(["date", "zone_id"])[cols].reset_index(drop=True),
    )
    history = again.history()
    assert history[0]["operationParameters"]["mode"] == "Overwrite"


@pytest.mark.e2e
def test_features_for_a_date_without_activity_is_not_ready(spark, tmp_path: Path, capsys):
    common = ["--set", f"tables.base_path={tmp_path / 'wh'}"]
    assert (
        main(
            [
                "generate",
                "--run-date",
                RUN_DATE,
                *common,
                "--users",
                "500",
                "--zones",
                "5",
                "--days",
                "3",
                "--customers",
                "50",
                "--campaign-rows",
                "50",
            ]
        )
        == 0
    )
    assert main(["features", "--run-date", "2026-07-05", *common]) == 3
    assert "no rows for 1 of the requested dates" in capsys.readouterr().err
