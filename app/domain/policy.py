"""Policies (DOMAIN.md "Policies"): limits overridden at decision time.

A policy names, per ``plan_id`` (and for the default plan), per ``title_id`` and per ``studio_id``,
limits that replace the ones the events carry. An override replaces only the value it names: a field
left at ``KEEP`` keeps the event's value, ``None`` means unlimited where the domain allows it. The
rules look every limit up through the policy, so the state keeps what the events said and a policy
is a pure function argument; the live decider runs with ``EMPTY``, which changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Literal

from app.domain.state import DEFAULT_PLAN, Plan


class _Keep(Enum):
    KEEP = "keep"

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep.KEEP
Keep = Literal[_Keep.KEEP]


@dataclass(frozen=True, slots=True)
class PlanLimits:
    """Overrides of a plan's limits. ``device_limit`` and ``downloads_per_device`` are >= 1 (never
    unlimited); ``monthly_limit`` is >= 1 or None (no monthly limit)."""

    device_limit: int | Keep = KEEP
    downloads_per_device: int | Keep = KEEP
    monthly_limit: int | None | Keep = KEEP

    def __post_init__(self) -> None:
        _at_least("device_limit", self.device_limit, 1, nullable=False)
        _at_least("downloads_per_device", self.downloads_per_device, 1, nullable=False)
        _at_least("monthly_limit", self.monthly_limit, 1)

    def apply(self, plan: Plan) -> Plan:
        return Plan(
            plan.plan_id,
            plan.device_limit if self.device_limit is KEEP else self.device_limit,
            plan.downloads_per_device if self.downloads_per_device is KEEP else self.downloads_per_device,
            plan.monthly_limit if self.monthly_limit is KEEP else self.monthly_limit,
        )


@dataclass(frozen=True, slots=True)
class TitleLimits:
    """Overrides of a title's limits: ``title_yearly_limit`` >= 1 or None (unlimited),
    ``max_renewals`` >= 0 or None (unlimited)."""

    title_yearly_limit: int | None | Keep = KEEP
    max_renewals: int | None | Keep = KEEP

    def __post_init__(self) -> None:
        _at_least("title_yearly_limit", self.title_yearly_limit, 1)
        _at_least("max_renewals", self.max_renewals, 0)


@dataclass(frozen=True, slots=True)
class StudioLimits:
    """Override of a studio's concurrent limit: >= 1 or None (unlimited)."""

    studio_concurrent_limit: int | None | Keep = KEEP

    def __post_init__(self) -> None:
        _at_least("studio_concurrent_limit", self.studio_concurrent_limit, 1)


@dataclass(frozen=True, slots=True)
class Policy:
    """Limit overrides by plan, title and studio. ``default_plan`` overrides the default plan (plan_id
    ``default``, the plan of a member before any PlanChanged); ``plans`` may then not name it too.

    The mappings are treated as read-only, like the state's."""

    plans: Mapping[str, PlanLimits] = field(default_factory=dict)
    default_plan: PlanLimits | None = None
    titles: Mapping[str, TitleLimits] = field(default_factory=dict)
    studios: Mapping[str, StudioLimits] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.default_plan is not None and DEFAULT_PLAN.plan_id in self.plans:
            raise ValueError(f"the default plan is overridden twice: by default_plan and by plans.{DEFAULT_PLAN.plan_id}")

    @property
    def is_empty(self) -> bool:
        return not (self.plans or self.default_plan or self.titles or self.studios)

    def plan(self, plan: Plan) -> Plan:
        """The member's plan with this policy's overrides of it."""
        if not self.plans and self.default_plan is None:
            return plan
        limits = self.plans.get(plan.plan_id)
        if limits is None and plan.plan_id == DEFAULT_PLAN.plan_id:
            limits = self.default_plan
        return plan if limits is None else limits.apply(plan)

    def title_yearly_limit(self, title_id: str, given: int | None) -> int | None:
        """The yearly limit of a title: the override if this policy names one, else ``given`` (the
        event's value, or the one recorded on the license at acquisition)."""
        limits = self.titles.get(title_id) if self.titles else None
        if limits is None or limits.title_yearly_limit is KEEP:
            return given
        return limits.title_yearly_limit

    def max_renewals(self, title_id: str, given: int | None) -> int | None:
        limits = self.titles.get(title_id) if self.titles else None
        if limits is None or limits.max_renewals is KEEP:
            return given
        return limits.max_renewals

    def studio_concurrent_limit(self, studio_id: str, given: int | None) -> int | None:
        limits = self.studios.get(studio_id) if self.studios else None
        if limits is None or limits.studio_concurrent_limit is KEEP:
            return given
        return limits.studio_concurrent_limit


EMPTY: Final = Policy()


def _at_least(name: str, value: int | None | Keep, low: int, *, nullable: bool = True) -> None:
    if value is KEEP or (value is None and nullable):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        allowed = f"a whole number >= {low}" + (" or None (unlimited)" if nullable else "")
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
