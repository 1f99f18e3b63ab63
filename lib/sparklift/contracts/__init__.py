"""Every table's contract, by name: schema, partition columns, key and grain.

The one place a table's shape is declared. ``Catalog.write`` takes a table's partitioning
from its contract and refuses a frame without its columns; README's "Tables" section lists
the same contracts (a test compares them).
"""

from __future__ import annotations

from sparklift.contracts import geo, inputs, pipeline, predict, quality, vouchers
from sparklift.contracts.contract import TableContract
from sparklift.errors import InputError

CONTRACTS: dict[str, TableContract] = {
    c.name: c
    for c in (
        *inputs.CONTRACTS,
        *geo.CONTRACTS,
        *predict.CONTRACTS,
        *vouchers.CONTRACTS,
        *pipeline.CONTRACTS,
        *quality.CONTRACTS,
    )
}
TABLE_NAMES = tuple(CONTRACTS)

__all__ = ["CONTRACTS", "TABLE_NAMES", "TableContract", "contract"]


def contract(name: str) -> TableContract:
    """The contract of table ``name`` (its logical name, as in ``tables.names``)."""
    if name not in CONTRACTS:
        raise InputError(f"no contract for table {name!r}; the tables are {sorted(CONTRACTS)}")
    return CONTRACTS[name]
