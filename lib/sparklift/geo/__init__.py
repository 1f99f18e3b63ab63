"""Geo experiments: zone matching, randomization, cell statistics and DiD fits."""
