"""Input events of DOMAIN.md and the accepted-event record.

Times are milliseconds since the epoch (UTC). Nullable limits mean "unlimited".
"""

from __future__ import annotations

from dataclasses import dataclass

RELEASE_REASONS = ("DELETED", "EXPIRED", "REVOKED")


@dataclass(frozen=True, slots=True)
class PlanChanged:
    plan_id: str
    device_limit: int
    downloads_per_device: int
    monthly_limit: int | None


@dataclass(frozen=True, slots=True)
class LicenseAcquired:
    license_id: str
    device_id: str
    title_id: str
    studio_id: str
    expires_at: int
    title_yearly_limit: int | None
    studio_concurrent_limit: int | None
    max_renewals: int | None
    download_quality: str | None = None


@dataclass(frozen=True, slots=True)
class LicenseRenewed:
    license_id: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class LicenseReleased:
    license_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class DeviceDeactivated:
    device_id: str


Payload = PlanChanged | LicenseAcquired | LicenseRenewed | LicenseReleased | DeviceDeactivated
PAYLOAD_TYPES: tuple[type, ...] = (
    PlanChanged,
    LicenseAcquired,
    LicenseRenewed,
    LicenseReleased,
    DeviceDeactivated,
)


@dataclass(frozen=True, slots=True)
class DownloadEvent:
    event_id: str
    member_id: str
    occurred_at: int
    producer: str
    payload: Payload


@dataclass(frozen=True, slots=True)
class Recorded:
    """An accepted event as appended to the event store and the ledger."""

    seq: int
    clock: int
    event: DownloadEvent
