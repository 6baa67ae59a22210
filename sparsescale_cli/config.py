"""Configuration sections shared by every experiment kind.

These pydantic models are the single statement of what a config may hold:
types, ranges and defaults. Each experiment module adds its own sweep and
analysis sections and a ``kind`` tag; :mod:`sparsescale_cli.loading` reads
YAML into the union of all kinds.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .model.laws import DataLaw, Teacher, c_for_mean_active

# Coordinate indices are float64, exact up to 2^53; a finite M above that is
# indistinguishable from inf for every law here, and is rejected to say so.
MAX_FINITE_M = 2**53


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, ser_json_inf_nan="strings")


def parse_count(value: Any) -> Any:
    """Accept integers, integral floats such as 1e6, and inf spelled as a float or string."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("inf", "infinity", "+inf", ".inf"):
            return math.inf
        try:
            value = float(text)
        except ValueError:
            return value
    if isinstance(value, float) and math.isfinite(value) and value == math.floor(value):
        return int(value)
    return value


def _check_count(value: Any, allow_inf: bool) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a positive integer{' or inf' if allow_inf else ''}, got {value!r}")
    if isinstance(value, float):
        if math.isinf(value) and value > 0 and allow_inf:
            return math.inf
        raise ValueError(f"expected a positive integer{' or inf' if allow_inf else ''}, got {value!r}")
    if value < 1:
        raise ValueError(f"expected a positive integer, got {value}")
    return int(value)


class CountRange(StrictModel):
    """Integers from ``start`` to ``stop`` (inclusive), ``num`` of them, log-spaced by default."""

    start: Annotated[float, Field(gt=0)]
    stop: Annotated[float, Field(gt=0)]
    num: Annotated[int, Field(ge=1, le=10_000)]
    spacing: Literal["log", "linear"] = "log"

    @model_validator(mode="after")
    def _ordered(self) -> CountRange:
        if self.stop < self.start:
            raise ValueError(f"range stop {self.stop:g} is below start {self.start:g}")
        return self

    def values(self) -> list[int]:
        if self.spacing == "log":
            raw = np.geomspace(self.start, self.stop, self.num)
        else:
            raw = np.linspace(self.start, self.stop, self.num)
        return sorted({max(1, int(round(v))) for v in raw})


def _parse_range_string(value: Any) -> Any:
    """Turn "start:stop:num" into a log-spaced CountRange mapping."""
    if isinstance(value, str) and value.count(":") == 2:
        start, stop, num = value.split(":")
        try:
            return {"start": float(start), "stop": float(stop), "num": int(float(num))}
        except ValueError:
            raise ValueError(f"expected 'start:stop:num' with numbers, got {value!r}") from None
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return [value]
    return value


def _count_list(allow_inf: bool):
    def validate(value: Any) -> list[int | float]:
        value = _parse_range_string(value)
        if isinstance(value, dict):
            return CountRange.model_validate(value).values()
        if isinstance(value, CountRange):
            return value.values()
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list of counts or a range {{start, stop, num}}, got {value!r}")
        if not value:
            raise ValueError("expected at least one value")
        counts = [_check_count(parse_count(v), allow_inf) for v in value]
        return sorted(set(counts))

    return validate


SampleCounts = Annotated[list[int], BeforeValidator(_count_list(allow_inf=False))]
FeatureCounts = Annotated[list[int | float], BeforeValidator(_count_list(allow_inf=True))]


class DataConfig(StrictModel):
    """The sparse input law: spectrum, activation probabilities and amplitudes."""

    alpha: Annotated[float, Field(gt=0, le=20)] = 1.0
    s: Annotated[float, Field(ge=0, le=50)] = 2.0
    c: Annotated[float | None, Field(gt=0)] = None
    mean_active: Annotated[float | None, Field(gt=0)] = None
    M: Annotated[int | float, BeforeValidator(parse_count)] = math.inf
    amplitude: Literal["variance_preserving", "tied"] = "variance_preserving"
    amplitude_scale: Annotated[float, Field(gt=0)] = 1.0

    @field_validator("M")
    @classmethod
    def _check_M(cls, value: Any, info: ValidationInfo) -> int | float:
        count = _check_count(value, allow_inf=True)
        if not math.isinf(count) and count > MAX_FINITE_M:
            raise ValueError(f"finite M must be at most 2^53 = {MAX_FINITE_M:.3g}; use inf for larger")
        s = info.data.get("s")
        if math.isinf(count) and s is not None and s <= 1:
            raise ValueError(
                f"M = inf needs s > 1 (got s = {s:g}): every input would have infinitely many "
                "active coordinates; set a finite M, e.g. M: 100000"
            )
        return count

    @model_validator(mode="after")
    def _one_prefactor(self) -> DataConfig:
        if self.c is not None and self.mean_active is not None:
            raise ValueError("give either c or mean_active, not both")
        if self.s == 0 and math.isinf(self.M):
            raise ValueError("the dense model (s = 0) needs a finite M")
        return self

    def law(self) -> DataLaw:
        """Return the DataLaw this section describes (solving for c if mean_active is given)."""
        c = self.c
        if c is None:
            c = 1.0 if self.mean_active is None else c_for_mean_active(self.mean_active, self.s, self.M)
        return DataLaw(
            alpha=self.alpha,
            s=self.s,
            c=c,
            M=float(self.M),
            amplitude=self.amplitude,
            amplitude_scale=self.amplitude_scale,
        )


class TeacherConfig(StrictModel):
    """Linear teacher: weight exponent beta (E[w_i^2] = i^-beta) and label noise sigma."""

    beta: Annotated[float, Field(ge=0, le=20)] = 0.0
    noise: Annotated[float, Field(ge=0)] = 0.0

    def teacher(self) -> Teacher:
        return Teacher(beta=self.beta, noise=self.noise)


class StudentConfig(StrictModel):
    """Random-feature student phi_j(x) = sigma_F act(z_j . x + b_j): activation, scale of F, bias."""

    activation: Literal["linear", "relu", "tanh", "gelu", "abs", "erf"] = "linear"
    normalization: Literal["inverse_n", "unit"] = "inverse_n"
    # Standard deviation of the keyed biases b_j ~ N(0, bias^2); 0 means no bias.
    bias: Annotated[float, Field(ge=0, le=1e6)] = 0.0


class RidgeFit(StrictModel):
    """Ridge regression; ridge = 0 is the minimum-norm least-squares solution by SVD."""

    method: Literal["ridge"] = "ridge"
    ridge: Annotated[float, Field(ge=0)] = 0.0


ETA_RELATIVE = "relative"
ETA_ABSOLUTE = "absolute"


class GradientDescentFit(StrictModel):
    """Full-batch gradient descent from theta = 0 with a fixed step eta for T steps.

    The training loss is (1/(2D)) ||Phi theta - y||^2, so a run diverges exactly
    when eta * lambda_max(Phi^T Phi / D) > 2. With ``eta_unit: relative`` the
    step is eta / lambda_max of the population Hessian E[phi(x) phi(x)^T], so
    eta < 2 is stable on the population loss.
    """

    method: Literal["gradient_descent"]
    eta: Annotated[float, Field(gt=0)]
    eta_unit: Literal["relative", "absolute"] = ETA_RELATIVE
    steps: Annotated[int, Field(ge=1, le=10**12)] = 1000
    record_steps: list[Annotated[int, Field(ge=0)]] | None = None

    @field_validator("record_steps")
    @classmethod
    def _record_within_steps(cls, value: list[int] | None, info: ValidationInfo) -> list[int] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("record_steps must list at least one step, or be left out")
        steps = info.data.get("steps")
        beyond = [t for t in value if steps is not None and t > steps]
        if beyond:
            raise ValueError(f"steps {beyond} exceed steps = {steps}; raise fit.steps or drop them")
        return value

    def recorded_steps(self) -> list[int]:
        """Return the steps at which the loss is recorded: ``record_steps``, or 0, T and about 30 log-spaced."""
        if self.record_steps is not None:
            return sorted(set(self.record_steps))
        spaced = np.geomspace(1, self.steps, 30).round().astype(int).tolist()
        return sorted({0, self.steps, *spaced})


def _default_fit_method(value: Any) -> Any:
    """Let a fit section without ``method`` mean ridge, as before gradient descent existed."""
    if isinstance(value, dict) and "method" not in value:
        return {**value, "method": "ridge"}
    return value


Fit = Annotated[RidgeFit | GradientDescentFit, Field(discriminator="method"), BeforeValidator(_default_fit_method)]


class ExperimentBase(StrictModel):
    """Fields every experiment kind has."""

    name: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=80)] = None
    description: str | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    fit: Fit = Field(default_factory=RidgeFit)
    replicates: Annotated[int, Field(ge=2, le=1_000_000)] = 10
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
