"""The nightly pipeline: which steps run for a date, in what order, and what to record."""
