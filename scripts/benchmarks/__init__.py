"""The benchmarks of ``scripts/bench.py``, one module per benchmark (``HELP``,
``add_arguments``, ``run``), and the timing and peak-memory helpers they share."""
