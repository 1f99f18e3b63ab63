"""forecast: the forecast error of the raw, shrunk and winner's-curse corrected lifts against
the planted truth, over simulated portfolios of experiments.

Each portfolio has ``--experiments`` concluded experiments whose true lifts are weak and
heterogeneous (normal, mean ``--mean``, sd ``--spread``) and whose estimates carry the
standard errors of geo experiments (uniform in ``--se-low``..``--se-high``: what the
demo's designs give at 20-60 zones per arm). ``sparklift.geo.forecast.forecasts`` runs on
them as the job does (each experiment's prior from the others). Prints, per portfolio and
over all: the root mean squared forecast error of each lift, and among the significant
results the mean error (the winner's curse) and the RMSE, raw against corrected. No Spark:
the forecasts are driver-side arithmetic over a few rows per experiment.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import stats

from sparklift.config import load_config
from sparklift.geo.forecast import forecasts

HELP = "forecast error of raw, shrunk and curse-corrected lifts against the planted truth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--portfolios", type=int, default=20)
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--mean", type=float, default=0.01)
    parser.add_argument("--spread", type=float, default=0.015)
    parser.add_argument("--se-low", type=float, default=0.005)
    parser.add_argument("--se-high", type=float, default=0.03)


def run(args: argparse.Namespace, workdir: str) -> None:
    conf = load_config(None, ["forecast.platform_revenue={gmv: 1.0}"]).forecast
    out = []
    t0 = time.perf_counter()
    for seed in range(args.portfolios):
        rng = np.random.default_rng(1000 + seed)
        n = args.experiments
        truth = rng.normal(args.mean, args.spread, n)
        se = rng.uniform(args.se_low, args.se_high, n)
        x = truth + se * rng.standard_normal(n)
        lifts = pd.DataFrame(
            {
                "experiment_id": [f"e{i}" for i in range(n)],
                "metric": "gmv",
                "variant": "treatment",
                "concluded_on": None,
                "cov_type": "zone",
                "lift": x,
                "lift_se": se,
                "p_value": 2 * stats.norm.sf(np.abs(x) / se),
            }
        )
        rows = forecasts(lifts, conf, {f"e{i}": 0.05 for i in range(n)})
        sig = rows["significant"].to_numpy()
        err = {
            k: rows[f"forecast_{k}"].to_numpy() - truth for k in ("raw", "shrunk", "winners_curse")
        }
        out.append(
            {
                "seed": seed,
                "significant": int(sig.sum()),
                "rmse_raw": rms(err["raw"]),
                "rmse_shrunk": rms(err["shrunk"]),
                "sig_bias_raw": err["raw"][sig].mean(),
                "sig_bias_corrected": err["winners_curse"][sig].mean(),
                "sig_rmse_raw": rms(err["raw"][sig]),
                "sig_rmse_corrected": rms(err["winners_curse"][sig]),
                "sig_rmse_shrunk": rms(err["shrunk"][sig]),
            }
        )
    frame = pd.DataFrame(out)
    print(frame.round(5).to_string(index=False))
    m = frame.mean(numeric_only=True)
    print(
        f"\n{args.portfolios} portfolios of {args.experiments} experiments "
        f"({time.perf_counter() - t0:.1f} s), lifts in relative units:"
    )
    print(
        f"  RMSE over all: raw {m.rmse_raw:.5f}, shrunk {m.rmse_shrunk:.5f} "
        f"({m.rmse_shrunk / m.rmse_raw - 1:+.0%}); shrunk better in "
        f"{(frame.rmse_shrunk < frame.rmse_raw).sum()}/{len(frame)}"
    )
    print(
        f"  significant results ({m.significant:.0f} per portfolio): mean error raw "
        f"{m.sig_bias_raw:+.5f}, corrected {m.sig_bias_corrected:+.5f}; RMSE raw "
        f"{m.sig_rmse_raw:.5f}, corrected {m.sig_rmse_corrected:.5f}, shrunk "
        f"{m.sig_rmse_shrunk:.5f}; corrected better in "
        f"{(frame.sig_rmse_corrected < frame.sig_rmse_raw).sum()}/{len(frame)}"
    )


def rms(v: np.ndarray) -> float:
    return float(np.sqrt(np.mean(v**2)))
