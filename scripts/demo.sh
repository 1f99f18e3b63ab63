#!/usr/bin/env bash
# Set up, generate a demo data set, prepare the history (features backfill, an experiment
# design, an uplift model, a propensity model), then run the nightly pipeline for two
# consecutive dates on the embedded local Spark and print its summary. Tables land under
# data/demo (DEMO_DIR=...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYSPARK_PYTHON="$PWD/.venv/bin/python"
DIR=${DEMO_DIR:-data/demo}
RUN_DATE=${RUN_DATE:-$(.venv/bin/python -c 'import datetime as d; print(d.date.today() - d.timedelta(days=1))')}
START=$(.venv/bin/python -c "import datetime as d; print(d.date.fromisoformat('$RUN_DATE') - d.timedelta(days=15))")
PREV=$(.venv/bin/python -c "import datetime as d; print(d.date.fromisoformat('$RUN_DATE') - d.timedelta(days=1))")
HIST=$(.venv/bin/python -c "import datetime as d; print(d.date.fromisoformat('$RUN_DATE') - d.timedelta(days=2))")
CHECKED=$(.venv/bin/python -c "import datetime as d; print(d.date.fromisoformat('$RUN_DATE') - d.timedelta(days=30))")
SL=".venv/bin/sparklift"
SETS=(--config conf/sparklift.yaml --set "tables.base_path=$DIR" --set "tables.model_path=$DIR/models")

if [ -e "$DIR/generate.run.json" ]; then  # an earlier demo's tables: start afresh (its
  echo "== removing the earlier demo's tables in $DIR"  # experiment, analysed, keeps its design)
  rm -rf "$DIR"
fi
mkdir -p "$DIR"
echo "== 1/9 generate: synthetic raw tables with a planted truth, customers of $PREV and $RUN_DATE"
$SL generate "${SETS[@]}" --run-date "$RUN_DATE" --users "${DEMO_USERS:-100000}" --zones 200 --days 70 \
  --set generate.customer_snapshots=2 > "$DIR/generate.run.json"
echo "== 2/9 features: zone/day history $START .. $HIST (one backfill job); the data quality"
echo "        history of user_activity $CHECKED .. $HIST (one pass), so that its anomaly checks work"
$SL features "${SETS[@]}" --start "$START" --end "$HIST" > "$DIR/features.run.json"
$SL check "${SETS[@]}" --table user_activity --start "$CHECKED" --run-date "$HIST" > "$DIR/check.run.json"
echo "== 3/9 design: geo experiment conf/experiments/demo_banner.yaml on the history to $HIST"
$SL design "${SETS[@]}" --run-date "$HIST" --experiment conf/experiments/demo_banner.yaml > "$DIR/design.run.json"
echo "== 4/9 train-uplift: multi-voucher uplift model on the randomized voucher history"
$SL train-uplift "${SETS[@]}" --run-date "$HIST" > "$DIR/train_uplift.run.json"
echo "== 5/9 train-propensity: P(an order in the next 7 days) from 28 days of each user's history"
$SL train-propensity "${SETS[@]}" --run-date "$HIST" --set propensity.history_days=28 > "$DIR/train_propensity.run.json"
echo "== 6/9 pipeline for $PREV and $RUN_DATE: features -> analyze every running experiment,"
echo "        user-history -> score-propensity, score -> allocate every active campaign, each"
echo "        after the data quality checks of its inputs (check:<table>)"
$SL pipeline "${SETS[@]}" --start "$PREV" --end "$RUN_DATE" | tee "$DIR/pipeline.txt"
echo "== 7/9 pipeline for $RUN_DATE again: every step already succeeded, so each is skipped"
$SL pipeline "${SETS[@]}" --run-date "$RUN_DATE" 2>/dev/null
MEASURED=$(.venv/bin/python -c "import datetime as d; print(d.date.fromisoformat('$RUN_DATE') + d.timedelta(days=14))")
CAMPAIGN=conf/campaigns/demo_winback.yaml
echo "== 8/9 the campaign sent on $RUN_DATE: its outcomes over 14 days (simulated from the planted"
echo "        effects), then measure on $MEASURED: the policy against the holdout; feedback: its"
echo "        explore arm appended to voucher_campaigns as a randomized campaign"
$SL simulate-outcomes "${SETS[@]}" --run-date "$RUN_DATE" --campaign "$CAMPAIGN" > "$DIR/outcomes.run.json"
$SL measure "${SETS[@]}" --run-date "$MEASURED" --allocated-on "$RUN_DATE" --campaign "$CAMPAIGN" > "$DIR/measure.run.json"
$SL feedback "${SETS[@]}" --run-date "$MEASURED" --allocated-on "$RUN_DATE" --campaign "$CAMPAIGN" > "$DIR/feedback.run.json"
echo "== 9/9 report: one HTML page per experiment and campaign, with the measurement, and their index"
$SL report "${SETS[@]}" --run-date "$MEASURED" --all > "$DIR/report.run.json"

.venv/bin/python - "$DIR" "$RUN_DATE" <<'PY'
import json, sys
import pandas as pd
from deltalake import DeltaTable
from sparklift.tables.local import read_pandas
d, day = sys.argv[1], sys.argv[2]
on_day = lambda df, col="run_date": df[pd.to_datetime(df[col]).dt.strftime("%Y-%m-%d") == day]
gen, feat = json.load(open(f"{d}/generate.run.json")), json.load(open(f"{d}/features.run.json"))
print(f"\nTables (Delta, under {d}):")
for name in ("zones", "user_activity", "customers", "vouchers", "voucher_campaigns",
             "zone_day_features", "geo_experiments", "geo_assignments", "geo_design_checks",
             "geo_results", "geo_sequential", "propensity_models", "user_history", "propensity_scores",
             "uplift_models", "uplift_scores", "allocations",
             "allocation_summary", "campaign_outcomes", "campaign_results", "pipeline_runs"):
    t = DeltaTable(f"{d}/{name}")
    rows = sum(t.get_add_actions(flatten=True).column("num_records").to_pylist())
    print(f"  {name:20s} version {t.version():2d}  {rows:>10,d} rows  {d}/{name}")
truth = json.load(open(f"{d}/generator_truth.json"))["geo"]
print(f"\nPlanted geo effect: {len(truth['treated_zones'])} treated zones from {truth['effect_start']}, "
      f"true ATT on orders {truth['att']['orders']:.4f}/user-day ({truth['relative_att']['orders']:.1%})")
f = read_pandas(f"{d}/zone_day_features")
print(f"zone_day_features {f.date.min()}..{f.date.max()}: {f.zone_id.nunique()} zones x {f.date.nunique()} days, "
      f"{len(f.columns) - 2} features; totals over all zones, last 7 days:")
daily = f.groupby("date")[["active_users", "visits", "orders", "gmv"]].sum()
daily["orders_per_visit"] = daily.orders / daily.visits
print(daily.round(3).tail(7).to_string())
design = json.load(open(f"{d}/design.run.json"))
print(f"\nGeo design {design['experiment_id']}: {design['status']}, {design['zones']} of "
      f"{design['eligible']} eligible zones; matched/random within-group distance "
      f"{design['match_distance_ratio']:.2f}, PCA explains {design['explained_variance']:.0%}")
checks = read_pandas(f"{d}/geo_design_checks")
checks = checks[checks.experiment_id == design["experiment_id"]]
print(checks[["metric", "variant", "aa_estimate", "aa_se", "tost_p", "equivalent", "mde_relative",
              "power", "sequential_power", "expected_days_target", "expected_days_h0"]]
      .round(4).to_string(index=False))
res = on_day(read_pandas(f"{d}/geo_results"))
res = res[(res.experiment_id == "synthetic_geo") & res.term.isin(["att", "lift"]) & (res.cov_type == "zone")]
print(f"\nAnalysis of synthetic_geo on {day} (zone-clustered; true ATT: orders {truth['att']['orders']:.4f}, "
      f"gmv {truth['att']['gmv']:.4f}; relative {truth['relative_att']['orders']:.1%}):")
print(res[["metric", "term", "estimate", "ci_low", "ci_high", "p_value", "wild_p", "ri_p",
           "pretrend_p"]].round(4).to_string(index=False))
seq = read_pandas(f"{d}/geo_sequential")
seq = seq[seq.experiment_id == "synthetic_geo"].sort_values(["run_date", "metric"])
exp = read_pandas(f"{d}/geo_experiments").set_index("experiment_id").loc["synthetic_geo"]
print(f"\nSequential looks of synthetic_geo (looks {[str(x) for x in exp.look_dates]}; status "
      f"{exp.status}{'' if exp.reason is None else ': ' + exp.reason}):")
print(seq[["run_date", "metric", "decision_point", "information_fraction", "z", "efficacy_bound",
           "decision", "rci_low", "rci_high"]].round(4).to_string(index=False))
prop = json.load(open(f"{d}/train_propensity.run.json"))
pm, ps = prop["metrics"], on_day(read_pandas(f"{d}/propensity_scores"))
print(f"\nPropensity model {prop['model_id']}: validation ROC-AUC {pm['roc_auc']:.3f}, PR-AUC "
      f"{pm['pr_auc']:.3f} (base rate {pm['base_rate']:.3f}), Brier {pm['brier']:.4f}, "
      f"{prop['calibrated_bins']}/10 deciles within 2 se; {len(ps):,} customers scored on {day}, "
      f"mean propensity {ps.propensity.mean():.3f}, top decile from {ps.propensity.quantile(0.9):.3f}")
model = read_pandas(f"{d}/uplift_models").sort_values("trained_at").iloc[-1]
m = json.loads(model.metrics)
print(f"\nUplift model {model.model_id} ({model.learner}, {model.train_rows:,} training rows, "
      f"{len(model.features)} features); held-out metrics per voucher:")
print("voucher  qini_obj  auuc_obj  avg_effect_obj  value_top20%_obj  avg_effect_cost")
for v, r in m["vouchers"].items():
    o, c = r["objective"], r["cost"]
    print(f"{v:7s} {o['qini']:9.4f} {o['auuc']:9.4f} {o['average_effect']:15.4f} "
          f"{o['policy_value']['0.2']:17.4f} {c['average_effect']:16.4f}")
import os
from pyspark.sql import SparkSession
from sparklift.synthetic.vouchers import FACE_VALUES, true_uplift, truth_report
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
customers = spark.createDataFrame(on_day(read_pandas(f"{d}/customers"), "snapshot_date"))
effects = json.load(open(f"{d}/generator_truth.json"))["vouchers"]["effects"]
truth = true_uplift(customers, {v: FACE_VALUES[j] for j, v in enumerate(model.vouchers)}, effects)
truth = truth.select("customer_id", "voucher_id", "tau_objective", "tau_cost").toPandas()
scores = on_day(read_pandas(f"{d}/uplift_scores"))
report = truth_report(scores.merge(truth, on=["customer_id", "voucher_id"]))
summary = on_day(read_pandas(f"{d}/allocation_summary"))
alloc = on_day(read_pandas(f"{d}/allocations"))
alloc = alloc[alloc.run_id.isin(summary.run_id)]  # the published run
spark.stop()
print(f"\nScores of {scores.customer_id.nunique():,} customers on {day} against the planted effects:")
print("voucher  corr_obj  rmse_obj  corr_cost  rmse_cost  oracle_share_top20%")
for v, r in report.items():
    print(f"{v:7s} {r['corr_objective']:9.3f} {r['rmse_objective']:9.4f} {r['corr_cost']:10.3f} "
          f"{r['rmse_cost']:10.4f} {r['captured']:20.3f}")
runs = on_day(read_pandas(f"{d}/pipeline_runs"))
runs = runs[runs.status == "succeeded"].sort_values("ended_at")
run = json.loads(runs[runs.kind == "allocate"].iloc[-1].summary)
how = ("solved in the driver's memory after 1 pass over the scores" if run['reader'] == "driver"
       else f"{run['passes']} passes over the scores")
print(f"\nAllocation of campaign {run['campaign_id']} on {day} (run {run['run_id']}, {how}, "
      f"{run['cap_rounds']} cap rounds): {run['customers_allocated']:,} customers, "
      f"objective {run['objective']:.2f}, dual bound {run['dual_bound']:.2f}, "
      f"relative gap {run['gap_rel']:.1e}")
print(summary[["budget_group", "budget", "spent", "objective", "dual_bound", "gap_rel", "lambda",
               "n_customers", "n_allocated", "holdout_customers", "explore_customers",
               "explore_spent"]].round(4).to_string(index=False))
mu = {k: round(v, 4) for k, v in dict(summary.cap_multipliers.iloc[0]).items()}
policy = alloc[alloc.arm == "policy"]
print("policy customers per voucher:", policy.voucher_id.value_counts().sort_index().to_dict(),
      "; cap multipliers:", mu)
true = policy.merge(truth, on=["customer_id", "voucher_id"])
print(f"Against the planted effects: predicted objective {true.expected_uplift.sum():.1f}, "
      f"true {true.tau_objective.sum():.1f}; predicted cost {true.expected_cost.sum():.1f}, "
      f"true {true.tau_cost.sum():.1f}")
if run.get("objective_corrected") is None:
    print("Corrected for selection: not yet, as no campaign was measured in the last "
          "allocate.calibration_days; the measurement below calibrates the next runs")
else:
    lo, hi = run["objective_corrected_ci"]
    print(f"Corrected for selection by {run['calibration']['objective']['runs']} measured runs: "
          f"objective {run['objective_corrected']:.1f} (95% CI {lo:.1f} .. {hi:.1f})")
meas = json.load(open(f"{d}/measure.run.json"))
planted = true.tau_objective.sum()  # the planted effects of the vouchers sent
lo, hi = meas["incremental_objective_ci"]
quality = on_day(read_pandas(f"{d}/quality_results"))
print(f"\nData quality checks of {day} (quality_results; anomalies against the history "
      "backfilled in step 2):")
for table, rows in quality.groupby("table_name"):
    counts = rows.status.value_counts().to_dict()
    bad = rows[rows.status == "fail"]
    print(f"  {table:18s} {counts.get('pass', 0):3d} passed {counts.get('fail', 0):2d} failed "
          f"{counts.get('skipped', 0):2d} skipped" + "".join(
              f"\n    {r.check_name} ({r.severity}): {r.message}" for r in bad.itertuples()))
cut = meas.get('se_reduction_objective', 0)  # negative: the adjustment widened the SE
rlo, rhi = meas["realized_return_ci"]  # null: the incremental cost is not distinguishable from 0
num = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
ret_ci = f"95% CI {rlo:.2f} .. {rhi:.2f}" if rlo is not None else "95% CI unbounded"
print(f"\nMeasured on {meas['measured_on']} ({meas['customers_policy']:,} policy against "
      f"{meas['customers_holdout']:,} holdout customers, {meas['adjustment']} adjustment, SE "
      f"{abs(cut):.0%} {'below' if cut >= 0 else 'above'} the unadjusted one): incremental objective "
      f"{meas['incremental_objective']:.1f} (95% CI {lo:.1f} .. {hi:.1f}); the allocation predicted "
      f"{meas['predicted_objective']:.1f}; planted truth {planted:.1f}. Incremental cost "
      f"{meas['incremental_cost']:.1f} (predicted {meas['predicted_cost']:.1f}); return "
      f"{num(meas['realized_return'])} objective per unit of cost ({ret_ci}; predicted "
      f"{num(meas['predicted_return'])})")
fed = json.load(open(f"{d}/feedback.run.json"))
print(f"Fed back to voucher_campaigns as {fed['campaign_id']}: {fed['appended']:,} rows "
      f"{fed.get('rows_per_arm', {})} (the next train-uplift learns from them)")
res = read_pandas(f"{d}/campaign_results")
res = res[(res.adjustment == meas["adjustment"]) & (res.voucher_id != "*")]
res = res.sort_values(["metric", "budget_group", "voucher_id"])
print(res[["budget_group", "voucher_id", "metric", "n_policy", "n_holdout", "estimate", "ci_low",
           "ci_high", "predicted"]].round(4).to_string(index=False))
rep = json.load(open(f"{d}/report.run.json"))
print(f"\nReports (open in a browser; self-contained, no network needed): {rep['index']}")
for name, path in rep["pages"].items():
    print(f"  {name:28s} {path}  ({rep['bytes'][name] // 1000} kB)")
PY
