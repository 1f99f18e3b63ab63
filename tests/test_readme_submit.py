"""README's production spark-submit line and the standalone-cluster tests' submit use the
same flags (tests/standalone.py's ``production_flags``), so the two cannot drift."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from sparklift.delta_jars import coordinate
from tests.conftest import REPO
from tests.standalone import CLUSTER_FLAGS, production_flags


def cluster_section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("## Running on a cluster")
    return text[start : text.index("\n## ", start + 1)]


def readme_submit_argv(workdir: Path) -> list[str]:
    """The arguments README's spark-submit line passes, as bash expands it in ``workdir``
    (a stub ``spark-submit`` prints them; nothing else of the block runs)."""
    block = re.search(r"```bash\n(.*?)```", cluster_section(), re.S)[1]
    command = block[block.index("spark-submit") :].replace("\\\n", " ")
    out = subprocess.run(
        ["bash", "-c", 'spark-submit() { printf "%s\\0" "$@"; }\n' + command],
        cwd=workdir, capture_output=True, text=True, timeout=30,
        env={"PATH": os.environ["PATH"], "LC_ALL": "C"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.split("\0")[:-1]


def options(argv: list[str]) -> list[tuple[str, str]]:
    """The ``(--flag, value)`` pairs before the application."""
    pairs = []
    while argv and argv[0].startswith("--"):
        pairs.append((argv[0], argv[1]))
        argv = argv[2:]
    return pairs


def test_readme_submit_has_the_tests_production_flags(tmp_path):
    names = ["io.delta_delta-spark_2.13-4.4.0.jar", "io.delta_delta-storage-4.4.0.jar"]
    (tmp_path / "dist" / "jars").mkdir(parents=True)
    for name in names:
        (tmp_path / "dist" / "jars" / name).touch()
    readme = options(readme_submit_argv(tmp_path))
    ours = options([a.replace(f"{tmp_path}/", "") for a in production_flags(tmp_path / "dist")])
    assert [p for p in readme if p[0] not in CLUSTER_FLAGS] == ours
    assert dict(ours)["--jars"] == ",".join(f"dist/jars/{n}" for n in names)
    assert {flag for flag, _ in readme} >= {"--master", "--deploy-mode"}
    # The alternative for clusters that reach Maven Central names the pinned version.
    assert f"--packages {coordinate()}" in cluster_section()
