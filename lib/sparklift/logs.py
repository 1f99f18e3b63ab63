"""Logging for every job: plain lines for people, or one JSON object per line for log
collectors (``logging.format: json``), both on stderr so stdout keeps the job's summary.

Fields given as ``extra={...}`` (the pipeline's step, status, duration_s, row counts)
become JSON keys, so a collector can chart step timings without parsing messages.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

from sparklift.config import LoggingConfig

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ISO 8601), level, logger, message, the record's
    extra fields and, for errors, the exception."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out |= {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _Handler(logging.StreamHandler):
    """sparklift's own handler on the root logger (replaced, never duplicated)."""


def configure_logging(conf: LoggingConfig | None = None) -> None:
    """(Re)configure sparklift's stderr handler on the root logger; before the config is
    read, plain INFO. Handlers others installed (a test runner's, say) stay."""
    handler = _Handler(sys.stderr)
    as_json = conf is not None and conf.format == "json"
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(PLAIN))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(conf.level if conf else logging.INFO)
    logging.getLogger("py4j").setLevel(logging.WARNING)
