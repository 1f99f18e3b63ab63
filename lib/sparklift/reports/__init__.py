"""HTML reports people look at: one self-contained page per experiment and per campaign, and
an index (:mod:`sparklift.jobs.report` reads their rows and writes them)."""
