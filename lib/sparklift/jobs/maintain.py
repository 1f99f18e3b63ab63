"""``sparklift maintain``: compaction and VACUUM of the catalog's Delta tables."""

from __future__ import annotations

import argparse

from sparklift.errors import InputNotReadyError
from sparklift.jobs import JobContext, log, step
from sparklift.tables import Catalog
from sparklift.tables.maintenance import (
    check_retention,
    check_tombstones,
    maintain_table,
    table_properties,
)

HELP = (
    "compact (OPTIMIZE) and VACUUM Delta tables: --table T (repeatable or a comma list), "
    "default every table of the catalog that exists"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--table",
        action="append",
        default=[],
        metavar="T",
        help="a catalog table name, or a comma list of them (repeatable; default: all existing)",
    )


def selected_tables(catalog: Catalog, given: list[str]) -> list[str]:
    """The tables named (each must exist), in order and once each; or every existing one."""
    names = list(dict.fromkeys(n.strip() for arg in given for n in arg.split(",") if n.strip()))
    if not names:
        return [n for n in catalog.conf.names if catalog.exists(n)]
    for name in names:
        if not catalog.exists(name):
            raise InputNotReadyError(f"table {name} does not exist at {catalog.path(name)}")
    return names


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    conf = ctx.config.maintain
    check_retention(conf)
    names = selected_tables(ctx.catalog, args.table)
    if conf.vacuum:  # every table's tombstones, before any table is touched
        for name in names:
            check_tombstones(name, table_properties(ctx.catalog, name), conf)
    tables = {}
    for name in names:
        with step(f"maintaining {name}"):
            tables[name] = out = maintain_table(ctx.catalog, name, conf)
        log.info(
            "%s: version %d -> %d, files %d -> %d, vacuum deleted %s files",
            name,
            out["version_before"],
            out["version_after"],
            out["files_before"],
            out["files_after"],
            out["files_vacuumed"],
        )
    return {
        "optimize": conf.optimize,
        "vacuum": conf.vacuum,
        "time_travel_hours": conf.time_travel_hours,
        "vacuum_retention_hours": conf.vacuum_retention_hours,
        "tables": tables,
    }
