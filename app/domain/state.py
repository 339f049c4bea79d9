"""A member's state (DOMAIN.md "Member state") and the queries the rules and views share.

States are values: never mutated, compared by value. The dict fields are treated as read-only;
`evolve` builds new dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.domain.processed_ids import PROCESSED_IDS_BOUND, ProcessedIds

__all__ = ["DEFAULT_PLAN", "PROCESSED_IDS_BOUND", "License", "MemberState", "Plan", "ProcessedIds"]


@dataclass(frozen=True, slots=True)
class Plan:
    plan_id: str
    device_limit: int
    downloads_per_device: int
    monthly_limit: int | None


DEFAULT_PLAN = Plan(plan_id="default", device_limit=1, downloads_per_device=100, monthly_limit=None)


@dataclass(frozen=True, slots=True)
class License:
    license_id: str
    device_id: str
    title_id: str
    studio_id: str
    expires_at: int
    renewals: int
    max_renewals: int | None
    # The title's limits as recorded at acquisition: a renewal is checked against them.
    title_yearly_limit: int | None
    studio_concurrent_limit: int | None
    released: bool

    def is_active(self, t: int) -> bool:
        return not self.released and self.expires_at > t

    def state_at(self, t: int) -> str:
        if self.released:
            return "released"
        return "active" if self.expires_at > t else "expired"


@dataclass(frozen=True, slots=True)
class MemberState:
    member_id: str
    plan: Plan = DEFAULT_PLAN
    licenses: dict[str, License] = field(default_factory=dict)
    clock: int = 0
    seq: int = 0
    title_year_downloads: dict[tuple[str, int], int] = field(default_factory=dict)
    month_downloads: dict[tuple[int, int], int] = field(default_factory=dict)
    processed: ProcessedIds = field(default_factory=ProcessedIds)
    # Rejections decided since the last accepted event: with `seq` it is the member's input position.
    rejections_since_seq: int = 0

    @classmethod
    def empty(cls, member_id: str) -> MemberState:
        return cls(member_id=member_id)

    @property
    def position(self) -> tuple[int, int]:
        """(seq, rejections_since_seq): the position of the member's last decision, (0, 0) for none.
        It is the head the event store must still hold for decisions made from this state."""
        return self.seq, self.rejections_since_seq

    def active_licenses(self, t: int) -> list[License]:
        return [lic for lic in self.licenses.values() if lic.is_active(t)]

    def devices_in_use(self, t: int) -> list[str]:
        return sorted({lic.device_id for lic in self.licenses.values() if lic.is_active(t)})

    def active_on_device(self, device_id: str, t: int) -> int:
        return sum(1 for lic in self.licenses.values() if lic.device_id == device_id and lic.is_active(t))

    def active_of_studio(self, studio_id: str, t: int) -> int:
        return sum(1 for lic in self.licenses.values() if lic.studio_id == studio_id and lic.is_active(t))

    def title_downloads(self, title_id: str, year: int) -> int:
        return self.title_year_downloads.get((title_id, year), 0)

    def downloads_in_month(self, year: int, month: int) -> int:
        return self.month_downloads.get((year, month), 0)
