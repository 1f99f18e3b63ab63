"""Model artefacts are verified before they are trusted (issue 15, defect 3).

``model.pkl`` is unpickled only after its sha256 matches the hash in the model id,
meta.json's ``artifact_sha256`` and ``uplift_models.artifact_sha256``; the unpickled model's
own features and vouchers must equal meta.json's and are the ones scoring uses. The unit
tests need no Spark; the ``e2e`` ones run ``sparklift score`` on a tampered artefact."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pickle
import shlex
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import sklearn

from sparklift.cli import main
from sparklift.config import load_config
from sparklift.errors import InputError, InputNotReadyError
from sparklift.tables import Catalog
from sparklift.tables.local import read_pandas
from sparklift.uplift import model as artefact
from sparklift.uplift.registry import make_learner
from sparklift.uplift.training import arm_codes
from tests.test_uplift_jobs import RUN_DATE, args, history, run_json, write_history

FEATURES = ["x1", "x2"]
VOUCHERS = ["V01", "V02"]


class Payload:
    """A pickle that runs a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def fitted_model(features: list[str] = FEATURES) -> artefact.UpliftModel:
    frame = history(1000)
    frame["x3"] = frame["x1"] * frame["x2"]
    X = frame[features].to_numpy(dtype=float)
    arm = arm_codes(frame["treatment"], VOUCHERS)
    conf = load_config(None).uplift
    learners = {
        r: make_learner("t_linear", conf).fit(X, frame[r].to_numpy(dtype=float), arm)
        for r in artefact.RESPONSES
    }
    return artefact.UpliftModel("t_linear", list(features), list(VOUCHERS), learners)


def save(model: artefact.UpliftModel, tmp_path: Path) -> SimpleNamespace:
    """Save; the model's id, directory and the sha256 of its model.pkl."""
    out = artefact.save(model, str(tmp_path / "models"), dt.date(2026, 8, 31))
    sha = hashlib.sha256(Path(out[1], "model.pkl").read_bytes()).hexdigest()
    return SimpleNamespace(model_id=out[0], path=out[1], sha256=sha, result=out)


@pytest.fixture
def saved(tmp_path) -> SimpleNamespace:
    return save(fitted_model(), tmp_path)


def edit_meta(path: str, **changes) -> None:
    meta = json.loads(Path(path, "meta.json").read_text())
    Path(path, "meta.json").write_text(json.dumps({**meta, **changes}))


def test_id_hash_is_the_hash_of_the_stored_bytes(saved):
    digest = saved.sha256
    assert saved.result.sha256 == digest and saved.model_id == f"20260831-t_linear-{digest[:10]}"
    assert json.loads(Path(saved.path, "meta.json").read_text())["artifact_sha256"] == digest
    model = artefact.load(saved.path, FEATURES, VOUCHERS, saved.model_id, digest)
    assert model.model_id == saved.model_id and model.features == FEATURES
    X = np.array([[0.3, 1.0], [-1.0, 2.0]])
    assert model.predict(X)["cost"] == pytest.approx(fitted_model().predict(X)["cost"])


class ObjectStore:
    """A local filesystem that behaves as S3's: it cannot move a directory."""

    type_name = "s3"

    def __init__(self, fs) -> None:
        self.fs = fs

    def __getattr__(self, name: str):
        return getattr(self.fs, name)

    def move(self, src: str, dest: str) -> None:
        raise OSError(f"Cannot move directory {src}: S3 has no renames")


def test_an_object_store_gets_the_artefact_without_renaming_a_directory(tmp_path, monkeypatch):
    """On S3 the files go straight into the model's directory, meta.json last; the
    artefact then verifies and loads as a local one, and nothing else is left there."""
    real = artefact.filesystem
    monkeypatch.setattr(artefact, "filesystem", lambda p: (ObjectStore(real(p)[0]), real(p)[1]))
    out = save(fitted_model(), tmp_path)
    monkeypatch.undo()
    meta, _ = artefact.verify(out.path, out.model_id, out.sha256)
    assert meta["model_id"] == out.model_id
    assert sorted(os.listdir(Path(out.path).parent)) == [out.model_id]
    assert artefact.load(out.path, FEATURES, VOUCHERS).features == FEATURES


class Racing:
    """A local filesystem on which another run saves the same model just before this
    run's rename, or on which the write fails after the model's bytes."""

    type_name = "local"

    def __init__(self, fs, before_move=None, fail_meta: bool = False) -> None:
        self.fs, self.before_move, self.fail_meta = fs, before_move, fail_meta

    def __getattr__(self, name: str):
        return getattr(self.fs, name)

    def open_output_stream(self, path: str):
        if self.fail_meta and path.endswith("/meta.json"):
            raise OSError("disk full")
        return self.fs.open_output_stream(path)

    def move(self, src: str, dest: str) -> None:
        if self.before_move is not None:
            self.before_move()
        self.fs.move(src, dest)


@pytest.mark.parametrize("case", ["saved meanwhile", "write fails"])
def test_a_local_save_leaves_no_temporary_directory(tmp_path, monkeypatch, case):
    """Two runs saving the same model at once: the second finds the first's copy (the same
    bytes) and verifies it; a failed write leaves nothing behind either."""
    real = artefact.filesystem

    def other_run() -> None:  # once: the other run's save, on the real filesystem
        racing.before_move = None
        with monkeypatch.context() as m:
            m.setattr(artefact, "filesystem", real)
            save(fitted_model(), tmp_path)

    racing = Racing(real(str(tmp_path))[0], fail_meta=case == "write fails")
    racing.before_move = other_run if case == "saved meanwhile" else None
    monkeypatch.setattr(artefact, "filesystem", lambda p: (racing, real(p)[1]))
    if case == "write fails":
        with pytest.raises(OSError, match="disk full"):
            save(fitted_model(), tmp_path)
        assert os.listdir(tmp_path / "models" / "uplift") == []
        return
    out = save(fitted_model(), tmp_path)
    monkeypatch.undo()
    assert sorted(os.listdir(Path(out.path).parent)) == [out.model_id]
    assert artefact.verify(out.path, out.model_id, out.sha256)[0]["model_id"] == out.model_id


class KilledBeforeMeta(ObjectStore):
    """The object store of a job killed after model.pkl, before meta.json."""

    def open_output_stream(self, path: str):
        if path.endswith("/meta.json"):
            raise SystemExit("killed between model.pkl and meta.json")
        return self.fs.open_output_stream(path)


def test_an_object_store_write_killed_before_meta_json_is_not_there_until_saved_again(
    tmp_path, monkeypatch
):
    """Killed between its two objects: model.pkl alone is no artefact (readers look for
    meta.json first: not there yet, exit 3), and the re-run writes it whole."""
    real = artefact.filesystem
    killed = lambda p: (KilledBeforeMeta(real(p)[0]), real(p)[1])  # noqa: E731
    monkeypatch.setattr(artefact, "filesystem", killed)
    with pytest.raises(SystemExit):
        save(fitted_model(), tmp_path)
    monkeypatch.undo()
    [left] = list(tmp_path.rglob("model.pkl"))
    assert sorted(os.listdir(left.parent)) == ["model.pkl"]
    with pytest.raises(InputNotReadyError, match="does not exist"):
        artefact.verify(str(left.parent))
    monkeypatch.setattr(artefact, "filesystem", lambda p: (ObjectStore(real(p)[0]), real(p)[1]))
    out = save(fitted_model(), tmp_path)
    monkeypatch.undo()
    assert out.path.endswith(left.parent.name)
    assert artefact.verify(out.path, out.model_id, out.sha256)[0]["model_id"] == out.model_id


@pytest.mark.parametrize(
    "field, value",
    [("features", FEATURES[::-1]), ("vouchers", VOUCHERS[::-1]), ("features", ["x1"])],
    ids=["reordered features", "reversed vouchers", "fewer features"],
)
def test_meta_disagreeing_with_the_model_is_refused(saved, field, value):
    edit_meta(saved.path, **{field: value})
    with pytest.raises(InputError) as e:
        artefact.load(saved.path, FEATURES, VOUCHERS)
    own = FEATURES if field == "features" else VOUCHERS
    assert saved.model_id in str(e.value)
    assert str(own) in str(e.value) and str(value) in str(e.value)


def test_model_that_needs_more_features_than_it_lists_is_refused(tmp_path):
    model = fitted_model(["x1", "x2", "x3"])
    model.features = FEATURES  # learners fitted on 3 columns, model (and meta) list 2
    saved = save(model, tmp_path)
    with pytest.raises(InputError, match=f"model {saved.model_id} cannot predict from its 2"):
        artefact.load(saved.path, FEATURES, VOUCHERS)


def test_changed_bytes_are_refused(saved):
    pkl = Path(saved.path, "model.pkl")
    other = fitted_model()
    other.vouchers = VOUCHERS[::-1]  # a valid pickle of a different model
    pkl.write_bytes(pickle.dumps(other, protocol=5))
    actual = hashlib.sha256(pkl.read_bytes()).hexdigest()
    with pytest.raises(InputError) as e:
        artefact.load(saved.path, FEATURES, VOUCHERS)
    assert str(pkl) in str(e.value) and actual in str(e.value)
    assert saved.model_id[-10:] in str(e.value)


@pytest.mark.parametrize("forge", ["none", "meta", "id"])
def test_malicious_pickle_is_never_unpickled(saved, tmp_path, forge):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(Payload(marker))
    evil_sha = hashlib.sha256(evil).hexdigest()
    path, model_id = saved.path, saved.model_id
    if forge == "id":  # a self-consistent artefact under an id chosen for the payload
        model_id = f"20260831-t_linear-{evil_sha[:10]}"
        path = str(Path(saved.path).with_name(model_id))
        Path(path).mkdir()
        Path(path, "meta.json").write_text(Path(saved.path, "meta.json").read_text())
        edit_meta(path, model_id=model_id)
    Path(path, "model.pkl").write_bytes(evil)
    if forge in ("meta", "id"):
        edit_meta(path, artifact_sha256=evil_sha)
    with pytest.raises(InputError, match="fails verification"):
        if forge == "id":  # only uplift_models' sha256 (the trust root) can tell
            artefact.load(path, FEATURES, VOUCHERS, model_id, saved.sha256)
        else:
            artefact.load(path, FEATURES, VOUCHERS)
    assert not marker.exists()


@pytest.mark.parametrize("library, name", [("sklearn", "scikit-learn"), ("numpy", "numpy")])
def test_artifact_from_other_library_versions_is_refused(saved, library, name):
    meta = json.loads(Path(saved.path, "meta.json").read_text())
    assert (meta["sklearn"], meta["numpy"]) == (sklearn.__version__, np.__version__)
    edit_meta(saved.path, **{library: "0.0.1"})
    with pytest.raises(InputError) as e:
        artefact.load(saved.path, FEATURES, VOUCHERS)
    message = str(e.value)
    assert saved.model_id in message and saved.path in message and "not loaded" in message
    recorded = {"sklearn": sklearn.__version__, "numpy": np.__version__, library: "0.0.1"}
    assert (
        f"saved under scikit-learn {recorded['sklearn']} and numpy {recorded['numpy']}" in message
    )
    assert f"{name} 0.0.1" in message
    assert f"runs scikit-learn {sklearn.__version__} and numpy {np.__version__}" in message


def test_artifact_from_other_library_versions_loads_with_a_warning(saved, caplog):
    edit_meta(saved.path, numpy="1.0.0")
    with caplog.at_level("WARNING", logger="sparklift"):
        model = artefact.load(saved.path, FEATURES, VOUCHERS, on_version_mismatch="warn")
    X = np.array([[0.3, 1.0]])
    assert model.predict(X)["cost"] == pytest.approx(fitted_model().predict(X)["cost"])
    (record,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert f"saved under scikit-learn {sklearn.__version__} and numpy 1.0.0" in record.message
    assert f"runs scikit-learn {sklearn.__version__} and numpy {np.__version__}" in record.message


# ---- sparklift score on a registered model whose artefact was tampered with ----


@pytest.fixture(scope="module")
def registered(spark, tmp_path_factory) -> tuple[Path, dict]:
    """A warehouse with a t_linear model in uplift_models and 10 customers to score."""
    wh = tmp_path_factory.mktemp("artifacts") / "wh"
    write_history(spark, wh, history())
    sets = ["--set", "uplift.min_arm_rows=200", "--learner", "t_linear"]
    assert main(["train-uplift", *args(wh, *sets)]) == 0
    models = read_pandas(str(wh / "uplift_models"))
    customers = pd.DataFrame(
        {
            "snapshot_date": pd.Timestamp(RUN_DATE).date(),
            "customer_id": np.arange(10, dtype=np.int64),
            "budget_group": "NL",
            "x1": np.linspace(-1, 1, 10),
            "x2": np.linspace(0, 3, 10),
        }
    )
    catalog = Catalog(spark, load_config(None, [f"tables.base_path={wh}"]).tables)
    catalog.write("customers", spark.createDataFrame(customers))
    return wh, models.iloc[0].to_dict()


@pytest.fixture
def model_row(registered):
    """The registered model's row; its artefact is restored after the test."""
    wh, row = registered
    files = {n: Path(row["artifact_path"], n).read_bytes() for n in ("model.pkl", "meta.json")}
    yield wh, row
    for name, data in files.items():
        Path(row["artifact_path"], name).write_bytes(data)


def score_log(wh: Path) -> list[str]:
    log = wh / "uplift_scores" / "_delta_log"
    return sorted(os.listdir(log)) if log.exists() else []


def refused(capsys, wh: Path, row: dict) -> str:
    before = score_log(wh)
    capsys.readouterr()
    assert main(["score", *args(wh, "--model-id", row["model_id"])]) == 2
    assert score_log(wh) == before  # nothing written to uplift_scores
    return capsys.readouterr().err


@pytest.mark.e2e
def test_score_records_and_checks_the_artifact_sha256(model_row, capsys):
    wh, row = model_row
    blob = Path(row["artifact_path"], "model.pkl").read_bytes()
    assert row["artifact_sha256"] == hashlib.sha256(blob).hexdigest()
    assert row["model_id"].endswith(row["artifact_sha256"][:10])
    out = run_json(capsys, ["score", *args(wh, "--model-id", row["model_id"])])
    assert out["customers_scored"] == 10 and out["vouchers"] == VOUCHERS


@pytest.mark.e2e
@pytest.mark.parametrize(
    "field, value",
    [("features", FEATURES[::-1]), ("vouchers", VOUCHERS[::-1])],
    ids=["reordered features", "reversed vouchers"],
)
def test_score_refuses_meta_disagreeing_with_the_model(model_row, capsys, field, value):
    wh, row = model_row
    edit_meta(row["artifact_path"], **{field: value})
    err = refused(capsys, wh, row)
    assert f"model {row['model_id']} was trained with {field}" in err and str(value) in err


@pytest.mark.e2e
def test_score_never_unpickles_a_malicious_artifact(model_row, capsys, tmp_path):
    wh, row = model_row
    marker = tmp_path / "pwned"
    evil = pickle.dumps(Payload(marker))
    Path(row["artifact_path"], "model.pkl").write_bytes(evil)
    edit_meta(row["artifact_path"], artifact_sha256=hashlib.sha256(evil).hexdigest())
    err = refused(capsys, wh, row)
    assert "fails verification" in err and hashlib.sha256(evil).hexdigest() in err
    assert not marker.exists()


@pytest.mark.e2e
def test_score_refuses_changed_bytes(model_row, capsys):
    wh, row = model_row
    pkl = Path(row["artifact_path"], "model.pkl")
    blob = bytearray(pkl.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    pkl.write_bytes(bytes(blob))
    err = refused(capsys, wh, row)
    assert str(pkl) in err and row["artifact_sha256"][:10] in err


@pytest.mark.e2e
def test_score_refuses_or_warns_on_other_library_versions(model_row, capsys):
    wh, row = model_row
    edit_meta(row["artifact_path"], sklearn="1.0.0")
    err = refused(capsys, wh, row)  # score.on_version_mismatch: refuse, the default
    assert f"model {row['model_id']}: artefact {row['artifact_path']}" in err
    assert "saved under scikit-learn 1.0.0" in err and f"scikit-learn {sklearn.__version__}" in err
    warn = ["--model-id", row["model_id"], "--set", "score.on_version_mismatch=warn"]
    out = run_json(capsys, ["score", *args(wh, *warn)])
    assert out["model_id"] == row["model_id"] and out["customers_scored"] == 10
