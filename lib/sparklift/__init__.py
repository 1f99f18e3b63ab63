"""sparklift: Spark batch jobs that measure and act on incrementality."""

__version__ = "0.1.0"
