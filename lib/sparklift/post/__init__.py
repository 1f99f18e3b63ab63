"""Post-estimation on a two-way fixed-effects fit (:mod:`sparklift.stats.twfe`): the relative
lift, the wild cluster bootstrap, randomization inference and the event study. Each uses
the fit's public results (coefficients, bread, cell scores, projection) and never refits
from user rows."""
