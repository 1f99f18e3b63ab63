"""Covariances, small-sample corrections and t inference against independent references:
linearmodels' IV2SLS on rows (no fixed effects) and pyfixest's own ``get_ssc``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyfixest as pf
import pytest
from linearmodels.iv import IV2SLS
from pyfixest.utils.utils import get_ssc

from sparklift.config import load_config
from sparklift.errors import InputError
from sparklift.stats import covariance
from sparklift.stats.inference import t_inference
from sparklift.stats.ssc import CONVENTIONS, FIXEST, LINEARMODELS, FixedEffects

RTOL = 1e-10
ZONES, DAYS = 12, 9


@pytest.fixture(scope="module")
def ols():
    """Rows with a zone shock and heteroskedastic noise; OLS by hand, the scores summed per
    (zone, day) cell as the fixed-effects fit hands them over."""
    rng = np.random.default_rng(0)
    n = 400
    zone, day = rng.integers(0, ZONES, n), rng.integers(0, DAYS, n)
    x = np.column_stack([np.ones(n), rng.normal(size=n), rng.exponential(size=n)])
    y = x @ [1.0, 0.5, -0.2] + rng.normal(size=n) * (1 + x[:, 2]) + rng.normal(size=ZONES)[zone]
    bread = np.linalg.inv(x.T @ x)
    e = y - x @ (bread @ x.T @ y)
    cell, cell_of_row = np.unique(zone * DAYS + day, return_inverse=True)
    cell_scores = np.zeros((len(cell), 3))
    np.add.at(cell_scores, cell_of_row, x * e[:, None])
    scores = covariance.Scores(
        bread,
        cell_scores,
        {"zone": np.unique(cell // DAYS, return_inverse=True)[1], "day": cell % DAYS},
        n,
        float(e @ e),
        lambda: (x * e[:, None] ** 2).T @ x,
    )
    model = IV2SLS(pd.Series(y), pd.DataFrame(x, columns=["c", "a", "b"]), None, None)
    return scores, model, pd.DataFrame({"zone": zone, "day": day})


@pytest.mark.parametrize(
    "label,kw",
    [
        ("unadjusted", {"cov_type": "unadjusted"}),
        ("robust", {"cov_type": "robust"}),
        ("zone", {"cov_type": "clustered", "clusters": "zone"}),
        ("day", {"cov_type": "clustered", "clusters": "day"}),
        ("zone+day", {"cov_type": "clustered", "clusters": ["zone", "day"]}),
    ],
)
def test_uncorrected_covariances_equal_linearmodels(ols, label, kw):
    """Every registered covariance before its small-sample factor is linearmodels' with
    debiased=False, which applies none; cluster scores come from cell sums, not rows."""
    scores, model, groups = ols
    if "clusters" in kw:
        kw = kw | {"clusters": groups[kw["clusters"]]}
    ref = model.fit(debiased=False, **kw).cov.to_numpy()
    got = covariance.parse(label).estimate(scores)
    np.testing.assert_allclose(got.cov, ref, rtol=RTOL)
    expected_clusters = {"zone": ZONES, "day": DAYS, "zone+day": DAYS}.get(label)
    assert got.clusters == expected_clusters


def test_psd_fix_sets_negative_eigenvalues_to_zero():
    # [[1, 2], [2, 1]] has eigenvalues 3 and -1 (vectors (1, 1) and (1, -1) over sqrt 2).
    fixed, changed = covariance.psd(np.array([[1.0, 2.0], [2.0, 1.0]]))
    assert changed
    np.testing.assert_allclose(fixed, np.full((2, 2), 1.5), rtol=1e-12)
    same, changed = covariance.psd(np.eye(2))
    assert not changed and (same == np.eye(2)).all()


def test_too_few_clusters_and_unknown_labels_are_clear_errors(ols):
    scores = ols[0]
    one_zone = covariance.Scores(
        scores.bread, scores.cell_scores, {"zone": np.zeros(len(scores.cell_scores), int)}, 1
    )
    with pytest.raises(InputError, match="at least 2 clusters, got 1"):
        covariance.parse("zone").estimate(one_zone)
    with pytest.raises(InputError, match=r"'zone\+week' is not one of zone, day, zone\+day"):
        covariance.parse("zone+week")


N, K, G, T = 5000, 3, 40, 28


@pytest.mark.parametrize(
    "kind,clusters,vcov_type,g,k_fe_nested,fully_nested",
    [
        ("iid", (), "iid", None, 0, 0),
        ("hetero", (), "hetero", None, 0, 0),
        ("cluster", ("zone",), "CRV", G, G, 1),
        ("cluster", ("day",), "CRV", T, T, 1),
        ("cluster", ("zone", "day"), "CRV", T, G + T, 2),
    ],
)
def test_fixest_convention_equals_pyfixest_get_ssc(
    kind, clusters, vcov_type, g, k_fe_nested, fully_nested
):
    """pyfixest's defaults for a model with zone and day fixed effects. Its iid covariance
    starts from SSR / (N - 1) (feols' ``_vcov_iid``) and ours from SSR / N, hence the
    N / (N - 1)."""
    adj, df_k, df_t = get_ssc(
        ssc_dict=pf.ssc(),
        N=N,
        k=K,
        k_fe=G + T,
        k_fe_nested=k_fe_nested,
        n_fe=2,
        n_fe_fully_nested=fully_nested,
        G=g if g is not None else N,
        vcov_sign=1,
        vcov_type=vcov_type,
    )
    factor, df = FIXEST.correction(kind, FixedEffects(N, K, {"zone": G, "day": T}), clusters, g)
    base = N / (N - 1) if kind == "iid" else 1.0
    assert factor == pytest.approx(float(adj[0]) * base, rel=1e-14)
    assert df == df_t
    assert FIXEST.df_k(FixedEffects(N, K, {"zone": G, "day": T}), clusters) == df_k


@pytest.mark.parametrize("kind,clusters", [("iid", ()), ("hetero", ()), ("cluster", ("zone",))])
def test_linearmodels_convention_is_its_debiased_scale(kind, clusters):
    """PanelOLS(debiased=True) scales by nobs / (nobs - nvar - absorbed effects) and infers
    with t(nobs - nvar - absorbed effects), whatever the covariance."""
    fe = FixedEffects(N, K, {"zone": G, "day": T})
    factor, df = LINEARMODELS.correction(kind, fe, clusters, G if clusters else None)
    assert df == N - K - (G + T - 1)
    assert factor == pytest.approx(N / (N - K - (G + T - 1)), rel=1e-14)


def test_t_inference_equals_linearmodels(ols):
    """p-values and CIs of linearmodels' debiased robust fit from its estimates, standard
    errors and residual degrees of freedom."""
    ref = ols[1].fit(cov_type="robust", debiased=True)
    got = t_inference(list(ref.params.index), ref.params, ref.std_errors, ref.df_resid, 0.05)
    ci = ref.conf_int()
    for name, e in got.items():
        assert e.t == pytest.approx(ref.tstats[name], rel=1e-12)
        assert e.p_value == pytest.approx(ref.pvalues[name], rel=1e-9)
        assert e.ci_low == pytest.approx(ci.loc[name, "lower"], rel=1e-10)
        assert e.ci_high == pytest.approx(ci.loc[name, "upper"], rel=1e-10)


def test_one_vocabulary_from_config_to_tables():
    """The labels config accepts are the registry's; each names its own clusters; the
    conventions config accepts are the named corrections."""
    config = load_config()
    assert set(config.analysis.covariances) <= set(covariance.COVARIANCES)
    assert config.design.convention in CONVENTIONS
    for label, cov in covariance.COVARIANCES.items():
        assert cov.label == label
        assert (cov.kind in ("cluster", "jackknife")) == bool(cov.clusters)
        suffix = "-jackknife" if cov.kind == "jackknife" else ""
        assert "+".join(cov.clusters) + suffix in ("", label)
