"""docker/ cannot be built or run here (no Docker on the build machine): check what can be
checked — the compose file parses into the promised services, and the image's Python,
Spark and Delta versions agree with pyproject.toml's pins."""

from __future__ import annotations

import re

import yaml
from packaging.specifiers import SpecifierSet

from sparklift.config import load_config
from tests.conftest import REPO

DOCKER = REPO / "docker"


def build_args() -> dict[str, str]:
    text = (DOCKER / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))


def pins() -> dict[str, str]:
    """pyproject's exact pins (name -> version) and requires-python (3.10 has no tomllib)."""
    text = (REPO / "pyproject.toml").read_text()
    found = dict(re.findall(r'^\s*"([\w-]+)==([^"]+)",?$', text, re.M))
    return found | {"requires-python": re.search(r'^requires-python = "(.+)"$', text, re.M)[1]}


def test_image_versions_match_pyproject_pins():
    args, pinned = build_args(), pins()
    assert args["SPARK_VERSION"] == pinned["pyspark"]
    assert args["DELTA_VERSION"] == pinned["delta-spark"]
    assert args["PYTHON_VERSION"] + ".0" in SpecifierSet(pinned["requires-python"])
    assert args["SCALA_BINARY_VERSION"] == "2.13"  # Spark 4 is built for Scala 2.13 only
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}-\S+ AS sparklift$", text, re.M)
    assert "FROM sparklift AS airflow" in text
    assert "delta-spark_${SCALA_BINARY_VERSION}-${DELTA_VERSION}.jar" in text
    assert "-r /opt/airflow/requirements.txt" in text
    for path in ("docker/conf/sparklift.yaml", "docker/airflow/dags", "scripts/package.sh"):
        assert (REPO / path).exists() and path.split("/")[-1] in text


def test_compose_has_cluster_and_airflow():
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {
        "spark-master", "spark-worker-1", "spark-worker-2", "postgres", "airflow-init",
        "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
    }  # fmt: skip
    assert "deploy.master.Master" in services["spark-master"]["command"]
    for worker in ("spark-worker-1", "spark-worker-2"):
        assert services[worker]["command"].endswith("spark://spark-master:7077")
        assert services[worker]["build"]["target"] == "sparklift"
    commands = {name: services[name]["command"] for name in services if "airflow" in name}
    assert commands == {
        "airflow-init": "airflow db migrate",
        "airflow-apiserver": "airflow api-server --port 8080",
        "airflow-scheduler": "airflow scheduler",
        "airflow-dag-processor": "airflow dag-processor",
    }
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
    assert env["AIRFLOW_CONN_SPARK_DEFAULT"] == "spark://spark-master:7077"
    assert services["airflow-scheduler"]["build"]["target"] == "airflow"
    assert services["airflow-scheduler"]["depends_on"]["postgres"]["condition"] == (
        "service_healthy"
    )
    # The config every container runs with is a valid sparklift config.
    config = load_config(DOCKER / "conf" / "sparklift.yaml")
    assert config.tables.base_path == "/data/warehouse" and config.tables.backend == "native"
    mounts = {v for s in services.values() for v in s.get("volumes", [])}
    assert "data:/data" in mounts
    requirements = (DOCKER / "airflow" / "requirements.txt").read_text()
    assert "apache-airflow-providers-apache-spark==" in requirements
