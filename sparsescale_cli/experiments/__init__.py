"""Experiment kinds: one module each, registered here by its ``kind`` tag.

A module provides ``KIND``, its pydantic config class, ``plan``, ``run_trial``,
``analyze``, ``plot`` and ``estimate_trial_memory`` (see :mod:`.base`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Annotated, Union

from pydantic import Field, TypeAdapter

from . import compute_frontier, double_descent, gd_stability, nonlinear

MODULES: dict[str, ModuleType] = {
    double_descent.KIND: double_descent,
    compute_frontier.KIND: compute_frontier,
    gd_stability.KIND: gd_stability,
    nonlinear.KIND: nonlinear,
}
CONFIG_CLASSES = {
    double_descent.KIND: double_descent.DoubleDescentConfig,
    compute_frontier.KIND: compute_frontier.ComputeFrontierConfig,
    gd_stability.KIND: gd_stability.GDStabilityConfig,
    nonlinear.KIND: nonlinear.NonlinearConfig,
}
# Kinds whose modules are planned but not yet part of this version.
PLANNED_KINDS: tuple[str, ...] = ()


def experiment_module(kind: str) -> ModuleType:
    """Return the module implementing ``kind``."""
    return MODULES[kind]


def config_adapter() -> TypeAdapter:
    """Return a TypeAdapter for the union of all config classes, discriminated by ``kind``."""
    classes = tuple(CONFIG_CLASSES.values())
    if len(classes) == 1:
        return TypeAdapter(classes[0])
    return TypeAdapter(Annotated[Union[classes], Field(discriminator="kind")])
