r"""Lan-DeMets error-spending functions: how much of an error rate is spent by information t.

Lan & DeMets (1983) replace a fixed number of equally spaced looks by a function
f(t; level), non-decreasing in the information fraction t, with f(0) = 0 and f(t) = level for
t >= 1; the bound at a look spends f(t_k) - f(t_{k-1}) (Jennison & Turnbull 2000, ch. 7).
The families, named as in gsDesign's manual (sfLDOF, sfLDPocock, sfHSD, sfPower):

- ``obf``    O'Brien-Fleming type:  f = 2 - 2 Phi(z_{1-level/2} / sqrt(t))  (gsDesign sfLDOF);
- ``pocock`` Pocock type:           f = level * log(1 + (e - 1) t);
- ``hsd``    Hwang, Shih & DeCani (1990), parameter gamma (default -4):
             f = level * (1 - exp(-gamma t)) / (1 - exp(-gamma)),  gamma = 0: f = level * t;
- ``power``  Kim-DeMets power family (J&T 2000, ch. 7.3), parameter rho > 0 (default 3):
             f = level * t^rho.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr, ndtri

DEFAULT_PARAMS: dict[str, float | None] = {"obf": None, "pocock": None, "hsd": -4.0, "power": 3.0}


@dataclass(frozen=True)
class Spending:
    """A spending family and its parameter (gamma for ``hsd``, rho for ``power``, else None).

    A ``param`` of None takes the family's default; the parameter is checked on construction.
    """

    name: str
    param: float | None = None

    def __post_init__(self) -> None:
        if self.name not in DEFAULT_PARAMS:
            valid = ", ".join(DEFAULT_PARAMS)
            raise ValueError(f"spending: unknown name {self.name!r}, expected one of {valid}")
        problem = parameter_error(self.name, self.param)
        if problem:
            raise ValueError(f"spending: {problem}, got {self.param}")
        default = DEFAULT_PARAMS[self.name]
        object.__setattr__(self, "param", default if self.param is None else float(self.param))

    def cumulative(self, t: ArrayLike, level: float) -> np.ndarray:
        """Error spent by information fraction ``t`` (clipped to [0, 1]) out of ``level``."""
        x = np.clip(np.asarray(t, dtype=float), 0.0, 1.0)
        if self.name == "obf":
            with np.errstate(divide="ignore"):
                spent = 2.0 - 2.0 * ndtr(ndtri(1.0 - level / 2.0) / np.sqrt(x))
        elif self.name == "pocock":
            spent = level * np.log1p((math.e - 1.0) * x)
        elif self.name == "hsd":
            gamma = float(self.param)  # type: ignore[arg-type]
            spent = level * (x if gamma == 0.0 else np.expm1(-gamma * x) / np.expm1(-gamma))
        else:
            spent = level * x ** float(self.param)  # type: ignore[arg-type]
        return np.where(x >= 1.0, level, spent)


def parameter_error(name: str, param: float | None) -> str | None:
    """What the known family ``name`` expects of ``param`` when it is not that (None if it
    is): :class:`Spending` checks its parameter with it, the config on loading."""
    default = DEFAULT_PARAMS[name]
    if default is None:
        return None if param is None else f"{name!r} takes no parameter"
    value = default if param is None else float(param)
    if not math.isfinite(value):
        return f"{name!r} needs a finite parameter"
    if name == "power" and value <= 0:
        return "'power' needs rho > 0"
    return None


def spending(name: str, param: float | None = None) -> Spending:
    """The spending family ``name`` (obf, pocock, hsd, power) with its checked parameter."""
    return Spending(name, param)
