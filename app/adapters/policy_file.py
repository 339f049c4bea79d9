"""Policies written as YAML or JSON (``ledger whatif --policy FILE``, the what-if endpoint's body).

::

    description: two devices for basic, a stricter studio   # optional, free text
    default_plan:   {device_limit: 2}                        # the plan before any PlanChanged
    plans:
      basic:        {device_limit: 2, monthly_limit: null}   # null: no monthly limit
    titles:
      t-42:         {title_yearly_limit: 5, max_renewals: 3}
    studios:
      s-7:          {studio_concurrent_limit: 10}

Every section is optional; an empty file is the empty policy. A limit left out keeps the value the
events carry; ``null`` lifts it where the domain allows "unlimited" (all but ``device_limit`` and
``downloads_per_device``). Unknown keys, strings for numbers and limits out of range are refused,
with one line naming where (``PolicyError``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.domain.policy import KEEP, PlanLimits, Policy, StudioLimits, TitleLimits
from app.domain.state import DEFAULT_PLAN
from app.domain.validation import INT_MAX

ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"  # DOMAIN.md "Identifiers"
MAX_ENTRIES = 100_000  # per section: a policy is configuration, not data


def _integral_float(value: Any) -> Any:
    """5.0 is a whole number (JSON Schema agrees); "5", true and 5.5 are still refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _limit(low: int) -> Any:
    return Annotated[int, Field(strict=True, ge=low, le=INT_MAX), BeforeValidator(_integral_float)]


Identifier = Annotated[str, Field(pattern=ID_PATTERN)]
PlanId = Annotated[str, Field(min_length=1, max_length=256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanOverride(_Strict):
    """A plan's limits to override; a limit left out keeps the plan's own."""

    device_limit: _limit(1) = Field(None, description="devices in use at once (>= 1; never unlimited)")
    downloads_per_device: _limit(1) = Field(None, description="active licenses per device (>= 1; never unlimited)")
    monthly_limit: _limit(1) | None = Field(None, description="downloads a calendar month (null: unlimited)")

    @field_validator("device_limit", "downloads_per_device", mode="before")
    @classmethod
    def _never_unlimited(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null (unlimited): give a whole number >= 1")
        return value

    def limits(self) -> PlanLimits:
        return PlanLimits(**_named(self))


class TitleOverride(_Strict):
    """A title's limits to override, in place of what its LicenseAcquired events carry."""

    title_yearly_limit: _limit(1) | None = Field(None, description="downloads of the title a year (null: unlimited)")
    max_renewals: _limit(0) | None = Field(None, description="renewals of one license (null: unlimited)")

    def limits(self) -> TitleLimits:
        return TitleLimits(**_named(self))


class StudioOverride(_Strict):
    studio_concurrent_limit: _limit(1) | None = Field(
        None, description="active licenses of the studio at once (null: unlimited)")

    def limits(self) -> StudioLimits:
        return StudioLimits(**_named(self))


class PolicyModel(_Strict):
    """Limits overridden at decision time (DOMAIN.md "Policies"). Every section is optional."""

    description: str | None = Field(None, max_length=2_000, description="free text, for the reader")
    default_plan: PlanOverride | None = Field(
        None, description="overrides of the default plan (plan_id `default`, before any PlanChanged)")
    plans: dict[PlanId, PlanOverride] = Field(default_factory=dict, max_length=MAX_ENTRIES,
                                              description="overrides by plan_id")
    # additionalProperties: the schema says what validation does, keys outside the pattern are refused
    titles: dict[Identifier, TitleOverride] = Field(default_factory=dict, max_length=MAX_ENTRIES,
                                                    description="overrides by title_id",
                                                    json_schema_extra={"additionalProperties": False})
    studios: dict[Identifier, StudioOverride] = Field(default_factory=dict, max_length=MAX_ENTRIES,
                                                      description="overrides by studio_id",
                                                      json_schema_extra={"additionalProperties": False})

    @model_validator(mode="after")
    def _default_plan_once(self) -> PolicyModel:
        if self.default_plan is not None and DEFAULT_PLAN.plan_id in self.plans:
            raise ValueError(f"the default plan is overridden twice, by default_plan and by "
                             f"plans.{DEFAULT_PLAN.plan_id}: keep one")
        return self

    def to_policy(self) -> Policy:
        return Policy(
            plans={plan_id: o.limits() for plan_id, o in self.plans.items()},
            default_plan=None if self.default_plan is None else self.default_plan.limits(),
            titles={title_id: o.limits() for title_id, o in self.titles.items()},
            studios={studio_id: o.limits() for studio_id, o in self.studios.items()},
        )


class PolicyError(ValueError):
    """A policy that cannot be used: the message is one line saying where and why."""


def _named(model: BaseModel) -> dict[str, Any]:
    """Each field the policy names, with its value; the others keep the events' values (KEEP)."""
    return {name: getattr(model, name) if name in model.model_fields_set else KEEP
            for name in type(model).model_fields}


def describe(exc: ValidationError) -> str:
    """pydantic's errors as one line: ``location: message; ...``."""
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "[key]") or "policy"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "string_pattern_mismatch":
            message = "must be 1-64 characters from [A-Za-z0-9._:-]"
        elif error.get("type") == "extra_forbidden":
            message = "unknown key"
        parts.append(f"{location}: {message}")
    return "; ".join(parts) or "invalid policy"


def parse_policy(data: Any) -> Policy:
    """A policy from decoded YAML/JSON (None: the empty policy); raises PolicyError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"a policy is a mapping (sections default_plan, plans, titles, studios), "
                          f"not {type(data).__name__}")
    try:
        model = PolicyModel.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(describe(exc)) from None
    return model.to_policy()


def load_policy(path: str | Path) -> Policy:
    """A policy file: JSON when it ends in ``.json``, YAML otherwise; raises PolicyError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: not UTF-8 text") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text) if text.strip() else None
        else:
            data = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise PolicyError(f"{path}: not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(f"{path}: not valid YAML: {where}{' '.join(str(problem).split())}") from None
    try:
        return parse_policy(data)
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from None
