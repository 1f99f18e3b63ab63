"""A trained multi-voucher, two-response uplift model and its versioned artefact.

The artefact is a directory ``<model_path>/uplift/<model_id>/`` holding ``model.pkl`` (the
pickled :class:`UpliftModel`, pickled with an empty ``model_id`` so that the bytes do not
contain their own id) and ``meta.json`` (id, learner, features, vouchers, the sha256 of
``model.pkl``, library versions) so that a reader can check it without unpickling. The id is
``<yyyymmdd>-<learner>-<the first 10 hex digits of sha256(model.pkl)>``, so an artefact is
never overwritten by a different model; it is written to a temporary directory and renamed
into place, so a reader never sees half of one.

Unpickling runs code named by the pickle, so nothing is unpickled before :func:`verify`
has checked the bytes of ``model.pkl`` against the hash in the id, the one in
``meta.json`` and, when the caller has it, the one ``train-uplift`` recorded in
``uplift_models.artifact_sha256`` (the trust root: whoever can write the model directory
can also write a self-consistent id and meta.json). After unpickling, :func:`unpickle`
requires the model's own features and vouchers (which scoring uses) to equal meta.json's
and checks that the model predicts from that many features.

A pickle of scikit-learn or numpy objects is only known to load and predict the same under
the versions that wrote it, so meta.json records both and :func:`check_versions` refuses
an artefact saved under others, or only warns (``score.on_version_mismatch``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import pickle
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import pyarrow.fs as pafs
import sklearn

from sparklift.errors import InputError, InputNotReadyError
from sparklift.tables.commit import filesystem
from sparklift.uplift.learners import UpliftLearner, allows_nan

log = logging.getLogger("sparklift")

RESPONSES = ("objective", "cost")
LIBRARIES = {"sklearn": ("scikit-learn", sklearn), "numpy": ("numpy", np)}
HASH_DIGITS = 10
_ID = re.compile(rf"^\d{{8}}-.+-(?P<hash>[0-9a-f]{{{HASH_DIGITS}}})$")


@dataclass
class UpliftModel:
    """Per response, a learner predicting every voucher's effect against control."""

    learner: str
    features: list[str]
    vouchers: list[str]
    learners: dict[str, UpliftLearner]
    model_id: str = ""

    @property
    def handles_missing(self) -> bool:
        """Whether every response's learner accepts NaN features (its ``allow_nan`` tag)."""
        return all(allows_nan(m) for m in self.learners.values())

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Response -> (n, len(vouchers)) predicted effects."""
        return {r: np.asarray(m.predict(X), dtype=float) for r, m in self.learners.items()}


class Artifact(NamedTuple):
    """A saved model: its id, directory, the sha256 of its ``model.pkl`` and those bytes."""

    model_id: str
    path: str
    sha256: str
    blob: bytes


def model_dir(model_path: str, model_id: str, kind: str = "uplift") -> str:
    return f"{model_path.rstrip('/')}/{kind}/{model_id}"


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def save(model: UpliftModel, model_path: str, run_date: dt.date) -> Artifact:
    """Write the uplift model's artefact (:func:`save_artifact`)."""
    meta = {"features": model.features, "vouchers": model.vouchers, "responses": list(RESPONSES)}
    return save_artifact(model, "uplift", model_path, run_date, meta)


def save_artifact(
    model: Any, kind: str, model_path: str, run_date: dt.date, meta: dict[str, Any]
) -> Artifact:
    """Write ``model`` (with ``learner`` and ``model_id`` attributes) under
    ``<model_path>/<kind>/``; set ``model.model_id``. ``model.pkl`` is the model pickled
    with an empty ``model_id``; the id's hash is a prefix of those bytes' sha256."""
    model.model_id = ""
    blob = pickle.dumps(model, protocol=5)
    digest = sha256(blob)
    model.model_id = f"{run_date:%Y%m%d}-{model.learner.replace(':', '.')}-{digest[:HASH_DIGITS]}"
    meta = {
        "model_id": model.model_id,
        "learner": model.learner,
        **meta,
        "artifact_sha256": digest,
        **{key: lib.__version__ for key, (_, lib) in LIBRARIES.items()},
    }
    target = _absolute(model_dir(model_path, model.model_id, kind))
    fs, path = filesystem(target)
    if fs.get_file_info(f"{path}/meta.json").is_file:
        verify(target, model.model_id, digest, kind)  # the same model, already saved: intact?
        return Artifact(model.model_id, target, digest, blob)
    # Locally the files are written apart and the directory renamed into place, so a
    # reader sees all of it or nothing. An object store cannot rename a directory (S3's
    # move is one object's copy and delete), but each object appears whole: there
    # model.pkl is written first and meta.json, which readers look for first, last.
    local = fs.type_name == "local"
    into = f"{path}.tmp-{uuid.uuid4().hex[:8]}" if local else path
    try:
        fs.create_dir(into, recursive=True)
        with fs.open_output_stream(f"{into}/model.pkl") as f:
            f.write(blob)
        with fs.open_output_stream(f"{into}/meta.json") as f:
            f.write(json.dumps(meta, indent=2).encode())
        if local:
            try:
                fs.move(into, path)
            except OSError:  # another run saved the same model (same bytes, same id) first
                if not fs.get_file_info(f"{path}/meta.json").is_file:
                    raise
                verify(target, model.model_id, digest, kind)
    finally:
        if local and fs.get_file_info(into).type != pafs.FileType.NotFound:
            fs.delete_dir(into)  # moved into place, or a failed write's debris
    return Artifact(model.model_id, target, digest, blob)


def read(artifact_path: str) -> tuple[dict, bytes]:
    """The artefact's metadata and pickled model bytes, unverified: see :func:`verify`."""
    fs, path = filesystem(_absolute(artifact_path))
    if not fs.get_file_info(f"{path}/meta.json").is_file:
        raise InputNotReadyError(f"model artefact {artifact_path} does not exist")
    if not fs.get_file_info(f"{path}/model.pkl").is_file:
        raise InputError(f"model artefact {artifact_path} has meta.json but no model.pkl")
    with fs.open_input_stream(f"{path}/meta.json") as f:
        try:
            meta = json.loads(f.read())
        except ValueError as e:
            raise InputError(
                f"model artefact {artifact_path}: meta.json is not JSON: {e}"
            ) from None
    if not isinstance(meta, dict):
        raise InputError(f"model artefact {artifact_path}: meta.json is not a JSON object")
    with fs.open_input_stream(f"{path}/model.pkl") as f:
        blob = f.read()
    return meta, blob


def verify(
    artifact_path: str,
    model_id: str | None = None,
    expected_sha256: str | None = None,
    kind: str = "uplift",
) -> tuple[dict, bytes]:
    """The artefact's metadata and ``model.pkl`` bytes, after checking, without
    unpickling, that sha256(model.pkl) starts with the hash in ``model_id`` (default: the
    directory's name), equals meta.json's ``artifact_sha256`` and, if given,
    ``expected_sha256`` (``<kind>_models.artifact_sha256``), and that meta.json names
    ``model_id``. Any mismatch is an :class:`InputError` naming the artefact."""
    model_id = model_id or _absolute(artifact_path).rstrip("/").rsplit("/", 1)[-1]
    pkl = f"{artifact_path.rstrip('/')}/model.pkl"
    meta, blob = read(artifact_path)
    actual = sha256(blob)
    m = _ID.match(model_id)
    if m is None:
        raise InputError(
            f"model id {model_id!r} is not <yyyymmdd>-<learner>-<{HASH_DIGITS} hex digits>: "
            f"refusing to load {pkl}"
        )

    def refuse(what: str, expected: object) -> InputError:
        return InputError(
            f"model {model_id}: {pkl} fails verification ({what}): expected {expected}, "
            f"actual sha256 {actual}; not loaded"
        )

    recorded = meta.get("artifact_sha256")
    if recorded is None:
        raise refuse(
            "meta.json records no artifact_sha256: an artefact from before sha256 manifests, "
            f"retrain it with sparklift train-{kind}",
            "a recorded sha256",
        )
    if not actual.startswith(m["hash"]):
        raise refuse("sha256 of model.pkl vs the hash in the model id", f"sha256 {m['hash']}...")
    if recorded != actual:
        raise refuse("sha256 of model.pkl vs meta.json's artifact_sha256", f"sha256 {recorded}")
    if expected_sha256 is not None and expected_sha256 != actual:
        raise refuse(
            f"sha256 of model.pkl vs {kind}_models.artifact_sha256", f"sha256 {expected_sha256}"
        )
    if meta.get("model_id") != model_id:
        raise InputError(
            f"model {model_id}: {artifact_path}/meta.json names model "
            f"{meta.get('model_id')!r}; not loaded"
        )
    return meta, blob


def check_versions(
    meta: dict,
    artifact_path: str,
    model_id: str,
    on_mismatch: Literal["refuse", "warn"],
    kind: str = "uplift",
) -> None:
    """Refuse (``on_mismatch="refuse"``: :class:`InputError`) or log a warning
    (``"warn"``) when meta.json records other scikit-learn or numpy versions than the
    running ones, naming the artefact and both sets of versions."""
    recorded = {key: meta.get(key) for key in LIBRARIES}
    running = {key: lib.__version__ for key, (_, lib) in LIBRARIES.items()}
    if recorded == running:
        return

    def versions(v: dict) -> str:
        return " and ".join(f"{name} {v[key]}" for key, (name, _) in LIBRARIES.items())

    message = (
        f"model {model_id}: artefact {artifact_path} was saved under {versions(recorded)}, "
        f"this process runs {versions(running)}"
    )
    if on_mismatch == "refuse":
        raise InputError(
            f"{message}; not loaded (its predictions could differ from those at training): "
            f"retrain it with sparklift train-{kind}, or set score.on_version_mismatch=warn "
            "to load it anyway"
        )
    log.warning("%s; loading it anyway (score.on_version_mismatch=warn)", message)


def unpickle(meta: dict, blob: bytes, model_id: str) -> UpliftModel:
    """The model from bytes that :func:`verify` accepted, refused unless its own features
    and vouchers (in order) equal meta.json's and it predicts from that many features."""
    model = pickle.loads(blob)
    if not isinstance(model, UpliftModel):
        raise InputError(f"model {model_id}: model.pkl holds a {type(model).__name__}")
    model.model_id = model_id
    check_agrees(model, meta.get("features"), meta.get("vouchers"), "its meta.json")
    check_predicts(model)
    return model


def check_agrees(model: UpliftModel, features: object, vouchers: object, where: str) -> None:
    """Refuse unless ``features`` and ``vouchers`` equal the model's own, in order."""
    for name, own, other in (
        ("features", model.features, features),
        ("vouchers", model.vouchers, vouchers),
    ):
        if not isinstance(other, list) or list(own) != other:
            raise InputError(
                f"model {model.model_id} was trained with {name} {list(own)}, but {where} "
                f"lists {other}; refusing to score with a mismatched artefact"
            )


def check_predicts(model: UpliftModel) -> None:
    """One prediction on a row of zeros: each response must give (1, len(vouchers))."""
    who = f"model {model.model_id}" if model.model_id else f"the {model.learner} model fitted"
    try:
        pred = model.predict(np.zeros((1, len(model.features))))
        shapes = {r: np.shape(pred.get(r)) for r in RESPONSES}
    except Exception as e:  # the learner is the model's own code: any failure
        raise InputError(
            f"{who} cannot predict from its {len(model.features)} features "
            f"{model.features}: {type(e).__name__}: {e}"
        ) from None
    bad = {r: s for r, s in shapes.items() if s != (1, len(model.vouchers))}
    if bad:
        raise InputError(
            f"{who} predicts shapes {bad} for one row, expected "
            f"(1, {len(model.vouchers)}) for its vouchers {model.vouchers}"
        )


def check_compatible(model: UpliftModel, features: Sequence[str], vouchers: Sequence[str]) -> None:
    """Refuse a model whose features are not all in the input or that lacks a voucher."""
    missing = [c for c in model.features if c not in features]
    if missing:
        raise InputError(
            f"model {model.model_id} needs features {missing}, which the scoring input "
            f"lacks (it has {list(features)})"
        )
    unknown = [v for v in vouchers if v not in model.vouchers]
    if unknown:
        raise InputError(
            f"model {model.model_id} has no effects for vouchers {unknown} (it knows "
            f"{model.vouchers}); train a model on a history that includes them"
        )


def load(
    artifact_path: str,
    features: Sequence[str],
    vouchers: Sequence[str],
    model_id: str | None = None,
    expected_sha256: str | None = None,
    on_version_mismatch: Literal["refuse", "warn"] = "refuse",
) -> UpliftModel:
    """The verified model (see :func:`verify`; pass ``expected_sha256`` from
    ``uplift_models`` to check against the trust root), saved under the running library
    versions (else see :func:`check_versions`), compatible with the input."""
    model_id = model_id or _absolute(artifact_path).rstrip("/").rsplit("/", 1)[-1]
    meta, blob = verify(artifact_path, model_id, expected_sha256)
    check_versions(meta, artifact_path, model_id, on_version_mismatch)
    model = unpickle(meta, blob, model_id)
    check_compatible(model, features, vouchers)
    return model


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)
