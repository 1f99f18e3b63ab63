"""The Delta Lake JVM jars: fetched once at set-up, found offline at every job start.

``scripts/setup.sh`` runs ``python -m sparklift.delta_jars fetch``, which resolves
``io.delta:delta-spark_2.13:<version of the installed delta-spark package>`` and its
dependencies with Spark's own resolver (Ivy inside pyspark, exactly what ``spark-submit
--packages`` does on a cluster, and nothing to install beyond Python and Java) into a
folder the project owns, with a manifest naming the coordinate and the jars. A local
session then lists those files in ``spark.jars``: nothing is resolved or downloaded at
run time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

SCALA = "2.13"
MANIFEST = "manifest.json"
ENV_VAR = "SPARKLIFT_DELTA_JARS"
DELTA_SESSION_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
FETCH_HINT = "run scripts/setup.sh (it fetches the Delta Lake jars from Maven Central once)"


def coordinate() -> str:
    """The Maven coordinate matching the installed ``delta-spark`` Python package."""
    return f"io.delta:delta-spark_{SCALA}:{version('delta-spark')}"


def default_dir(configured: str | None = None) -> Path:
    """Where the jars live: the config value, else ``$SPARKLIFT_DELTA_JARS``, else
    ``.delta/jars`` in the source tree sparklift runs from."""
    if configured:
        return Path(configured).expanduser().resolve()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / ".delta" / "jars"


def find_jars(directory: Path) -> list[str] | None:
    """The fetched jars for the installed delta-spark, or None if absent or for another
    version (then set-up must fetch again)."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("coordinate") != coordinate():
        return None
    jars = [str(directory / name) for name in manifest.get("jars", [])]
    if not jars or not all(os.path.isfile(j) for j in jars):
        return None
    return jars


_RESOLVE = """
import sys
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("local[1]").appName("sparklift-fetch-delta")
         .config("spark.jars.packages", sys.argv[1]).config("spark.jars.ivy", sys.argv[2])
         .config("spark.ui.enabled", "false").getOrCreate())
spark.sparkContext._jvm.org.apache.spark.util.Utils.classForName(
    "io.delta.tables.DeltaTable", True, False)
spark.stop()
"""


def fetch(directory: Path) -> list[str]:
    """Resolve the coordinate and its dependencies into ``directory``; return the jars.

    Raises RuntimeError with one line saying why when they cannot be fetched.
    """
    found = find_jars(directory)
    if found:
        return found
    coord = coordinate()
    with tempfile.TemporaryDirectory(prefix="sparklift-ivy-") as ivy:
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
        out = subprocess.run(
            [sys.executable, "-c", _RESOLVE, coord, ivy],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        resolved = sorted(Path(ivy, "jars").glob("*.jar"))
        if out.returncode != 0 or not resolved:
            log = (out.stderr + out.stdout).splitlines()
            why = next((ln.strip() for ln in log if "unresolved dependency" in ln), None)
            why = why or next((ln.strip() for ln in reversed(log) if ln.strip()), "no output")
            raise RuntimeError(f"could not fetch {coord} from Maven Central: {why}")
        tmp = directory.with_name(directory.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for jar in resolved:
            shutil.copy2(jar, tmp / jar.name)
        manifest = {"coordinate": coord, "jars": [j.name for j in resolved]}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)
    return find_jars(directory) or []


def main(argv: list[str]) -> int:
    """``python -m sparklift.delta_jars fetch [DIR]`` (set-up) or ``list [DIR]`` (prints the
    comma-separated jars for ``spark-submit --jars``)."""
    if not argv or argv[0] not in ("fetch", "list"):
        print("usage: python -m sparklift.delta_jars fetch|list [DIR]", file=sys.stderr)
        return 2
    directory = default_dir(argv[1] if len(argv) > 1 else None)
    if argv[0] == "list":
        jars = find_jars(directory)
        if not jars:
            print(
                f"no Delta Lake jars for {coordinate()} in {directory}: {FETCH_HINT}",
                file=sys.stderr,
            )
            return 1
        print(",".join(jars))
        return 0
    try:
        jars = fetch(directory)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"{e}; sparklift will use the delta-rs backend", file=sys.stderr)
        return 1
    print(f"Delta Lake jars: {coordinate()} and {len(jars) - 1} dependencies in {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
