"""The step registry: each step declared once in its job module, read by the planner, the
config, the DAG's manifest and README's table; the run date's targets of the targeted
steps. No Spark."""

from __future__ import annotations

import datetime as dt
import json
import re
from types import SimpleNamespace

import pytest
import yaml

from sparklift.config import load_config
from sparklift.errors import ConfigError, InputError
from sparklift.jobs import JobContext, pipeline
from sparklift.pipeline import registry
from sparklift.pipeline.plan import plan_steps
from sparklift.pipeline.registry import PipelineStep
from tests.conftest import REPO

# README's "The nightly pipeline": the run order and the data dependencies.
PIPELINE = {
    "features": (),
    "analyze": ("features",),
    "user-history": (),
    "score-propensity": ("user-history",),
    "score": (),
    "allocate": ("score",),
}


def test_steps_are_the_job_modules_declarations_in_run_order():
    assert registry.kinds() == tuple(PIPELINE)
    assert {s.kind: s.depends_on for s in registry.steps()} == PIPELINE
    for kind in PIPELINE:
        assert registry.job(kind).__name__ == f"sparklift.jobs.{kind.replace('-', '_')}"
        assert registry.job(kind).STEP.kind == kind
    assert {"generate", "design", "train-uplift", "pipeline", "maintain"} <= set(registry.jobs())
    assert json.loads(registry.manifest()) == [
        {"kind": k, "depends_on": list(d), "may_fall_back": k == "allocate"}
        for k, d in PIPELINE.items()
    ]


def test_readme_table_of_steps_is_the_registry():
    text = (REPO / "README.md").read_text()
    header = "| step | one step per | needs | checks first |\n| --- | --- | --- | --- |\n"
    assert text.count(header) == 1
    rows = re.match(r"((?:\|.*\n)*)", text[text.index(header) + len(header) :]).group(1)
    expected = "".join(
        f"| `{s.kind}` | {s.per}{f' (`{s.kind}:<id>`)' if s.targets else ''} | "
        f"{', '.join(f'`{d}`' for d in s.depends_on) or '-'} | "
        f"{', '.join(f'`check:{t}`' for t in s.checks) or '-'} |\n"
        for s in registry.steps()
    )
    assert rows == expected, f"README's table of steps should be:\n{header}{expected}"


def test_a_new_step_is_one_declaration(monkeypatch):
    """A step declared after analyze and needing it is planned once per target, after the
    analyses, blocked by nothing else; the config accepts its kind."""
    report = PipelineStep(
        "report", order=22, depends_on=("analyze",), targets=lambda ctx: {}, per="report"
    )
    fake = SimpleNamespace(HELP="", add_arguments=None, run=None, STEP=report)
    known = registry.jobs()
    monkeypatch.setattr(registry, "jobs", lambda: {**known, "report": fake})
    monkeypatch.setattr(registry, "steps", registry.steps.__wrapped__)
    assert registry.kinds() == (
        "features",
        "analyze",
        "report",
        "user-history",
        "score-propensity",
        "score",
        "allocate",
    )
    targets = {"analyze": {"e1": ("--experiment", "e1")}, "report": {"r": ("--x", "r")}}
    steps = plan_steps(["features", "analyze", "report", "score"], targets)
    assert [(s.name, s.depends_on, s.args) for s in steps] == [
        ("features", (), ()),
        ("analyze:e1", ("features",), ("--experiment", "e1")),
        ("report:r", ("analyze:e1",), ("--x", "r")),
        ("score", (), ()),
    ]
    assert load_config(overrides=["pipeline.steps=[report]"]).pipeline.steps == ["report"]
    # A step that needs one declared after it is refused.
    early = PipelineStep("report", order=5, depends_on=("analyze",))
    monkeypatch.setattr(fake, "STEP", early)
    with pytest.raises(ValueError, match=r"report depends on \['analyze'\], not steps before"):
        registry.steps()


def test_config_refuses_unknown_and_repeated_steps():
    with pytest.raises(ConfigError, match=r"pipeline.steps: .*unknown pipeline steps \['feat"):
        load_config(overrides=["pipeline.steps=[features,featurs]"])
    with pytest.raises(ConfigError, match="steps are listed twice"):
        load_config(overrides=["pipeline.steps=[score,allocate,score]"])


def test_active_campaigns_of_a_run_date(tmp_path):
    """Campaign files of pipeline.campaigns active on the date, by campaign_id; a broken
    file under its file name (it fails its own step); one id in two files is refused."""
    budgets = {"NL": 100.0}
    files = {
        "always": {"campaign_id": "always", "budgets": budgets},
        "june": {"campaign_id": "june", "budgets": budgets, "end": "2026-06-30"},
        "later": {"campaign_id": "later", "budgets": budgets, "start": "2026-07-01"},
        "broken": {"campaign_id": "broken", "budgets": budgets, "solver": "magic"},
    }
    for name, spec in files.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    config = load_config(overrides=[f"pipeline.campaigns=[{tmp_path}/*.yaml]"])

    def active(day: dt.date) -> dict:
        return registry.job("allocate").STEP.targets(SimpleNamespace(config=config, run_date=day))

    path = {name: str(tmp_path / f"{name}.yaml") for name in files}
    assert active(dt.date(2026, 6, 30)) == {
        "always": ("--campaign", path["always"]),
        "broken": ("--campaign", path["broken"]),
        "june": ("--campaign", path["june"]),
    }
    assert set(active(dt.date(2026, 7, 1))) == {"always", "broken", "later"}
    (tmp_path / "copy.yaml").write_text(yaml.safe_dump(files["always"]))
    with pytest.raises(InputError, match="campaign always is defined twice"):
        active(dt.date(2026, 6, 30))


def test_campaign_patterns_of_a_config_file_are_its_directory_s(tmp_path, monkeypatch):
    """A config file's relative pipeline.campaigns are searched from its directory, so a
    driver started elsewhere (cluster mode) finds the campaigns; the defaults' and a
    --set's from the working directory; an empty list allocates nothing."""
    conf = tmp_path / "conf"
    (conf / "campaigns").mkdir(parents=True)
    spec = {"campaign_id": "winback", "budgets": {"NL": 100.0}}
    (conf / "campaigns" / "winback.yaml").write_text(yaml.safe_dump(spec))
    (conf / "sparklift.yaml").write_text("pipeline: {campaigns: [campaigns/*.yaml]}\n")
    elsewhere = tmp_path / "driver"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(conf / "sparklift.yaml")
    assert config.pipeline.campaigns == [str(conf / "campaigns" / "*.yaml")]
    allocate = registry.job("allocate").STEP.targets
    day = dt.date(2026, 6, 30)
    found = {"winback": ("--campaign", str(conf / "campaigns" / "winback.yaml"))}
    assert allocate(SimpleNamespace(config=config, run_date=day)) == found

    # A pattern that matches nothing is a step of its own that fails (exit 2, naming the
    # key and the directory searched) rather than no allocation and success.
    defaults = load_config(None, ["pipeline.reports=false"])  # conf/campaigns/*.yaml
    assert allocate(SimpleNamespace(config=defaults, run_date=day)) == {
        "*": ("--campaign", "conf/campaigns/*.yaml")
    }
    job = registry.job("allocate")
    searched = re.escape(str(elsewhere / "conf" / "campaigns"))
    with pytest.raises(ConfigError, match=rf"^pipeline.campaigns: 'conf/campaigns/\*.yaml' "
                       rf"matches no campaign file in {searched} "):  # fmt: skip
        job.run(
            JobContext(None, defaults, None, day), SimpleNamespace(campaign="conf/campaigns/*.yaml")
        )
    assert (
        allocate(SimpleNamespace(config=load_config(None, ["pipeline.campaigns=[]"]), run_date=day))
        == {}
    )


def test_running_experiments_of_a_run_date():
    """Experiments not rejected whose post period [start, end] contains the date, sorted."""
    day = dt.date(2026, 6, 30)
    experiments = [  # id, status, start and end in days from the run date
        ("z_ends", "accepted", -9, 0),
        ("a_starts", "accepted", 0, 9),
        ("over", "accepted", -9, -1),
        ("not_yet", "accepted", 1, 9),
        ("rejected", "rejected", 0, 0),
    ]
    rows = [
        dict(experiment_id=e, status=s, start=day + dt.timedelta(a), end=day + dt.timedelta(b))
        for e, s, a, b in experiments
    ]
    frame = SimpleNamespace(select=lambda *cols: SimpleNamespace(collect=lambda: rows))
    catalog = SimpleNamespace(exists=lambda name: name == "geo_experiments", read=lambda _: frame)
    targets = registry.job("analyze").STEP.targets
    assert targets(SimpleNamespace(catalog=catalog, run_date=day)) == {
        "a_starts": ("--experiment", "a_starts"),
        "z_ends": ("--experiment", "z_ends"),
    }
    none = SimpleNamespace(exists=lambda name: False)
    assert targets(SimpleNamespace(catalog=none, run_date=day)) == {}


@pytest.mark.parametrize(
    "error, code",
    [(InputError("campaign always is defined twice: a.yaml and b.yaml"), 2),
     (OSError("geo_experiments: connection reset"), 1)],
)  # fmt: skip
def test_a_date_whose_steps_cannot_be_planned_fails_alone(monkeypatch, error, code):
    """A date whose plan fails (a campaign defined twice; a table that cannot be read) gets
    one failed 'plan' row, with the error's exit code (1: not a sparklift error), and
    _run_date returns it rather than raising, so a backfill's next date runs."""

    def broken(ctx, kinds):
        raise error

    recorded = []
    monkeypatch.setattr(pipeline, "_targets", broken)
    monkeypatch.setattr(pipeline, "_record", lambda ctx, outcome, run_id: recorded.append(outcome))
    ctx = SimpleNamespace(run_date=dt.date(2026, 6, 30), config=load_config(None))
    (out,) = pipeline._run_date(ctx, ["allocate"], False, "r1")
    assert (out.step, out.status, out.exit_code) == ("plan", "failed", code)
    assert out.error == f"the steps could not be planned: {error}"
    assert recorded == [out]
