"""A trained multi-voucher, two-response uplift model and its versioned artefact.

The artefact is a directory ``<model_path>/uplift/<model_id>/`` holding ``model.pkl`` (the
pickled :class:`UpliftModel`) and ``meta.json`` (id, learner, features, vouchers,
library versions) so that a reader can check it without unpickling. The id ends with a
hash of the pickled bytes, so an artefact is never overwritten by a different model; it
is written to a temporary directory and renamed into place, so a reader never sees half
of one. ``load`` refuses an artefact whose features or vouchers differ from the input's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pickle
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sklearn

from sparklift.errors import InputError, InputNotReadyError
from sparklift.tables.commit import filesystem
from sparklift.uplift.learners import UpliftLearner

RESPONSES = ("objective", "cost")


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
        return all(m.handles_missing for m in self.learners.values())

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Response -> (n, len(vouchers)) predicted effects."""
        return {r: np.asarray(m.predict(X), dtype=float) for r, m in self.learners.items()}


def model_dir(model_path: str, model_id: str) -> str:
    return f"{model_path.rstrip('/')}/uplift/{model_id}"


def save(model: UpliftModel, model_path: str, run_date: dt.date) -> tuple[str, str, bytes]:
    """Write the artefact; return (model_id, its directory, the pickled model)."""
    model.model_id = ""
    digest = hashlib.sha256(pickle.dumps(model, protocol=5)).hexdigest()[:10]
    model.model_id = f"{run_date:%Y%m%d}-{model.learner.replace(':', '.')}-{digest}"
    blob = pickle.dumps(model, protocol=5)
    meta = {
        "model_id": model.model_id,
        "learner": model.learner,
        "features": model.features,
        "vouchers": model.vouchers,
        "responses": list(RESPONSES),
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
    }
    target = _absolute(model_dir(model_path, model.model_id))
    fs, path = filesystem(target)
    if fs.get_file_info(f"{path}/meta.json").is_file:
        return model.model_id, target, blob  # the same model, already saved
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    fs.create_dir(tmp, recursive=True)
    with fs.open_output_stream(f"{tmp}/model.pkl") as f:
        f.write(blob)
    with fs.open_output_stream(f"{tmp}/meta.json") as f:
        f.write(json.dumps(meta, indent=2).encode())
    fs.move(tmp, path)
    return model.model_id, target, blob


def read(artifact_path: str) -> tuple[dict, bytes]:
    """The artefact's metadata and pickled model bytes."""
    fs, path = filesystem(_absolute(artifact_path))
    if not fs.get_file_info(f"{path}/meta.json").is_file:
        raise InputNotReadyError(f"model artefact {artifact_path} does not exist")
    with fs.open_input_stream(f"{path}/meta.json") as f:
        meta = json.loads(f.read())
    with fs.open_input_stream(f"{path}/model.pkl") as f:
        blob = f.read()
    return meta, blob


def check_compatible(meta: dict, features: Sequence[str], vouchers: Sequence[str]) -> None:
    """Refuse a model whose features are not all in the input or that lacks a voucher."""
    missing = [c for c in meta["features"] if c not in features]
    if missing:
        raise InputError(
            f"model {meta['model_id']} needs features {missing}, which the scoring input "
            f"lacks (it has {list(features)})"
        )
    unknown = [v for v in vouchers if v not in meta["vouchers"]]
    if unknown:
        raise InputError(
            f"model {meta['model_id']} has no effects for vouchers {unknown} (it knows "
            f"{meta['vouchers']}); train a model on a history that includes them"
        )


def load(artifact_path: str, features: Sequence[str], vouchers: Sequence[str]) -> UpliftModel:
    meta, blob = read(artifact_path)
    check_compatible(meta, features, vouchers)
    return pickle.loads(blob)


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)
