"""Type checks shared by the typed dataclass configs (``ShopperConfig``, ``WorldConfig``, ``EnvConfig``).

A config built from YAML or ``--set key=value`` can carry a value of the wrong type (``true`` where a count
is expected, a string, NaN); the dataclass would accept it and the failure would surface far away with a
misleading message. :func:`check_field_types` names the field instead.
"""

from __future__ import annotations

import math
import os
import typing
from dataclasses import fields, is_dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from encoders.errors import ConfigError


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_field_types(config: Any, allow_inf: tuple[str, ...] = ()) -> None:
    """Raise ``ValueError`` naming the first ``int`` / ``float`` / ``str`` / ``bool`` / nested-dataclass field of
    dataclass ``config`` whose value is not of that type.

    Booleans are not accepted as numbers; ``float`` fields take ints and floats, never NaN, and are finite
    unless named in ``allow_inf`` (e.g. a patience of ``math.inf`` that switches abandonment off). A nested
    config must be an instance of its class. Fields of other types (optionals, unions) are left to the
    config's own checks.
    """
    name = type(config).__name__
    for f in fields(config):
        hint, value = _hints(type(config))[f.name], getattr(config, f.name)
        if hint is bool:
            ok = isinstance(value, (bool, np.bool_))
        elif hint is int:
            ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        elif hint is float:
            ok = (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
                  and not math.isnan(value) and (math.isfinite(value) or f.name in allow_inf))
        elif hint is str:
            ok = isinstance(value, (str, os.PathLike))  # a catalog or cache folder may be given as a Path
        elif is_dataclass(hint):  # a nested config (e.g. EnvConfig.world)
            if not isinstance(value, hint):
                raise ConfigError(f"{name}.{f.name} must be a {hint.__name__}, got {type(value).__name__}.")
            continue
        else:
            continue
        if not ok:
            kind = {float: "a finite float" if f.name not in allow_inf else "a float (not NaN)",
                    int: "an int", str: "a string", bool: "a bool"}[hint]
            raise ConfigError(f"{name}.{f.name} must be {kind}, got {value!r}.")
