"""Statistics on small driver-side arrays: estimators, tests and power, each a small module."""
