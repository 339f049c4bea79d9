"""A seeded, realistic workload: `generate(config)` yields `Item`s, pure and deterministic.

Model (see DOMAIN.md for the rules the events are decided by):
- Members pick a plan when they first appear (a `PlanChanged` is always their first event): device
  limits 1, 2 and 4, some plans with few downloads per device and a monthly limit. Member activity is
  skewed (the member of activity rank k is picked with weight k^-member_skew), so power users reach
  their limits while most members stay light.
- A catalogue of titles with Zipf popularity (rank k has weight k^-zipf_exponent). Some titles carry
  a yearly limit, some studios a concurrent limit, and titles a `max_renewals`.
- Good events are mostly acquisitions, then releases (DELETED/EXPIRED/REVOKED), renewals, device
  deactivations and plan changes. The generator keeps a small model of each member (devices,
  recent licenses, counters) and shapes a good event so the decider accepts it; when nothing fits
  (device full, monthly limit reached...) the member releases a download instead, as users do.
- Some acquisitions start a download session: the member's next few events follow closely, on the
  same device, so devices fill up as they do when someone downloads a season before a flight.
- Limit-breaking events are shaped from the same model to hit a rule: an extra device, one download
  too many on a device, a renewal beyond max_renewals, a title over its yearly limit, a studio over
  its concurrent limit, a month over the plan's limit (those first, taken by one of a few members
  who can break one now), or, for a quarter of them or when no member at hand can, an expiry in the
  past, an unknown or released license, a license id reused.
- Duplicates re-send one of the recent well-formed events (same event_id, same content), as a
  producer retry does. Malformed and undecodable items come from `bad_input`.
- Event time advances with the item counter over `span_ms` (with a few seconds of jitter); a share of
  events arrives late (up to three days behind). Expiry times are relative to event time.

Every random draw comes from one `random.Random(seed)` and ids are built from the seed and the item
counter, so one config always yields the same items, byte for byte, in the same order. Memory is a
few small objects per member seen (at most `MAX_LICENSES` licenses remembered each).
"""
from __future__ import annotations

import bisect
import collections
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from app.domain.events import (
    DeviceDeactivated,
    DownloadEvent,
    LicenseAcquired,
    LicenseReleased,
    LicenseRenewed,
    PlanChanged,
)
from app.domain.utc import year_month
from app.domain.validation import IDENTIFIER
from tools.simulate import bad_input

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
DEFAULT_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

MAX_LICENSES = 32  # licenses remembered per member (active ones first)
KEEP_INACTIVE = 4  # expired or released licenses remembered per member (for renewals and releases)
MAX_DEVICES = 6  # registered devices remembered per member
RECENT_EVENTS = 256  # window duplicates are drawn from
BINGE_START = 0.06  # chance that an acquisition starts a download session of several titles
BINGE_LENGTH = (2, 9)  # further events of the member in a session (uniform in [2, 9))
BINGE_SHARE = 0.5  # chance that a member event goes to a member in a session, while one is under way

# plan_id, device_limit, downloads_per_device, monthly_limit, weight
PLANS: tuple[tuple[str, int, int, int | None, int], ...] = (
    ("trial", 1, 2, 6, 5),
    ("mobile", 1, 5, None, 12),
    ("basic", 1, 10, None, 20),
    ("basic-capped", 1, 3, 10, 8),
    ("standard", 2, 10, None, 25),
    ("standard-ads", 2, 5, 15, 15),
    ("premium", 4, 25, None, 12),
    ("premium-family", 4, 10, 40, 5),
)
_PLAN_CUM = list(itertools.accumulate(p[4] for p in PLANS))

LICENSE_DURATIONS_MS = (2 * DAY_MS, 7 * DAY_MS, 7 * DAY_MS, 7 * DAY_MS, 14 * DAY_MS, 30 * DAY_MS, 30 * DAY_MS)
QUALITIES = (None, "SD", "HD", "HD", "HD", "UHD")
TITLE_YEARLY_LIMITS = (1, 2, 3, 5)  # for the titles that have one
STUDIO_LIMITS = (1, 2, 3)  # for the studios that have one
MAX_RENEWALS = (None, None, None, 0, 0, 1, 1, 1, 2, 2, 3)
TITLES_PER_STUDIO = 25
LICENSE_PRODUCER, PLAN_PRODUCER, DEVICE_PRODUCER = "license-svc", "plan-svc", "device-svc"

# good actions: cumulative probabilities
_ACQUIRE, _RENEW, _RELEASE, _DEACTIVATE = 0.72, 0.82, 0.965, 0.985  # the rest: plan change

# limit-breaking intents and their weights when feasible; the limits of a plan or a title first
LIMIT_BREAKS = frozenset({"extra_device", "device_full", "renewal_max", "title_year", "studio", "monthly"})
BREAK_TRIES = 3  # members tried for a limit to break before sending an expired or unknown license
OTHER_BREAKS = 0.25  # share of rule-breaking events that are not about limits (expired, unknown license...)
BREAK_WEIGHTS = {
    "extra_device": 4,
    "device_full": 6,
    "renewal_max": 3,
    "title_year": 4,
    "studio": 4,
    "monthly": 4,
    "expired": 1.5,
    "unknown_license": 0.75,
    "released_license": 0.75,
    "license_conflict": 0.3,
}


class ItemKind(StrEnum):
    GOOD = "good"  # a well-formed event the generator expects to be accepted
    BREAKING = "breaking"  # a well-formed event shaped to break a rule (expected to be rejected)
    DUPLICATE = "duplicate"  # an earlier well-formed event re-sent (same event_id)
    MALFORMED = "malformed"  # decodable, but fails `validate`
    UNDECODABLE = "undecodable"  # raw bytes `decode_event` refuses


EVENT_KINDS = frozenset({ItemKind.GOOD, ItemKind.BREAKING, ItemKind.DUPLICATE})


@dataclass(frozen=True, slots=True)
class Item:
    """One message of the workload. `event` is set for every kind but UNDECODABLE, `raw` only for
    UNDECODABLE. `intent` says what the generator meant (e.g. "acquire", "extra_device",
    "bad_identifier:device_id", "truncated"). Every item is keyed by `member_id`."""

    kind: ItemKind
    member_id: str
    event: DownloadEvent | None = None
    raw: bytes | None = None
    intent: str = ""

    @property
    def key(self) -> bytes:
        return self.member_id.encode()


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    seed: int = 0
    members: int = 100_000
    events: int = 1_000_000  # items in all, of every kind
    titles: int = 5_000
    zipf_exponent: float = 1.1
    share_limit_breaking: float = 0.1
    share_duplicates: float = 0.02
    share_malformed: float = 0.005
    share_undecodable: float = 0.002
    start_ms: int = DEFAULT_START_MS
    span_ms: int = 90 * DAY_MS
    member_skew: float = 0.5  # 0: every member equally active
    share_late: float = 0.02  # events arriving up to three days behind
    id_prefix: str = ""  # prepended to member, event and license ids (to keep runs apart)

    def __post_init__(self) -> None:
        problems = []
        if self.members < 1:
            problems.append("members must be >= 1")
        if self.events < 0:
            problems.append("events must be >= 0")
        if self.titles < 1:
            problems.append("titles must be >= 1")
        if not self.zipf_exponent > 0:
            problems.append("zipf exponent must be > 0")
        if self.member_skew < 0:
            problems.append("member skew must be >= 0")
        if self.span_ms < 0:
            problems.append("span must be >= 0")
        if self.start_ms < 0:
            problems.append("start must not be before 1970")
        for name in ("share_limit_breaking", "share_duplicates", "share_malformed", "share_undecodable", "share_late"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                problems.append(f"{name.replace('_', ' ')} must be within 0..1, got {value}")
        if self.shares_total > 1:
            problems.append(f"the shares of limit-breaking, duplicate, malformed and undecodable items add up "
                            f"to {self.shares_total:g} > 1")
        if self.id_prefix and not IDENTIFIER.fullmatch(f"{self.id_prefix}m0"):
            problems.append(f"id prefix {self.id_prefix!r} must be characters from [A-Za-z0-9._:-]")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def shares_total(self) -> float:
        return self.share_limit_breaking + self.share_duplicates + self.share_malformed + self.share_undecodable

    def member_id(self, index: int) -> str:
        return f"{self.id_prefix}m{index:07d}"


def generate(config: WorkloadConfig) -> Iterator[Item]:
    """`config.events` items, deterministic for a given config."""
    return _Generator(config).items()


# --- catalogue ------------------------------------------------------------------------------


class Catalogue:
    """Titles with Zipf popularity and their limits; built from the generator's rng."""

    def __init__(self, rng: random.Random, titles: int, exponent: float) -> None:
        self.title_ids = [f"t{i:05d}" for i in range(titles)]
        studios = max(1, titles // TITLES_PER_STUDIO)
        self.studio_ids = [f"studio-{i:03d}" for i in range(studios)]
        studio_limit = [STUDIO_LIMITS[int(rng.random() * len(STUDIO_LIMITS))] if rng.random() < 0.2 else None for _ in range(studios)]
        self.studio = [int(rng.random() * studios) for _ in range(titles)]
        self.studio_limit = [studio_limit[s] for s in self.studio]
        self.yearly_limit = [
            TITLE_YEARLY_LIMITS[int(rng.random() * len(TITLE_YEARLY_LIMITS))] if rng.random() < 0.25 else None
            for _ in range(titles)
        ]
        self.max_renewals = [MAX_RENEWALS[int(rng.random() * len(MAX_RENEWALS))] for _ in range(titles)]
        self.studio_titles: list[list[int]] = [[] for _ in range(studios)]
        for title, studio in enumerate(self.studio):
            self.studio_titles[studio].append(title)
        # popularity rank -> title: the most popular titles are spread over the catalogue
        self.by_rank = list(range(titles))
        rng.shuffle(self.by_rank)
        self._cum = list(itertools.accumulate(rank ** -exponent for rank in range(1, titles + 1)))
        self._total = self._cum[-1]
        self._last = titles - 1

    def pick(self, u: float) -> int:
        """A title for a uniform draw u in [0, 1), by popularity."""
        rank = bisect.bisect_right(self._cum, u * self._total)
        return self.by_rank[rank if rank < self._last else self._last]


# --- per-member bookkeeping --------------------------------------------------------------------


class _License:
    __slots__ = ("lid", "device", "title", "expires", "renewals", "released")

    def __init__(self, lid: str, device: str, title: int, expires: int) -> None:
        self.lid = lid
        self.device = device
        self.title = title
        self.expires = expires
        self.renewals = 0
        self.released = False


class _Member:
    __slots__ = ("mid", "started", "clock", "plan", "devices", "next_device", "licenses", "month",
                 "month_count", "year", "title_counts", "binge_device")

    def __init__(self, mid: str) -> None:
        self.mid = mid
        self.started = False
        self.clock = 0
        self.plan = PLANS[0]
        self.devices: list[str] = []  # registered devices, oldest first
        self.next_device = 1
        self.licenses: list[_License] = []
        self.month = 0  # year * 12 + month of month_count
        self.month_count = 0
        self.year = 0  # year of title_counts
        self.title_counts: dict[int, int] = {}  # downloads this year of titles with a yearly limit
        self.binge_device: str | None = None  # the device of the download session under way

    def active_by_device(self, t: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        for lic in self.licenses:
            if not lic.released and lic.expires > t:
                counts[lic.device] = counts.get(lic.device, 0) + 1
        return counts

    def month_downloads(self, t: int) -> int:
        year, month = year_month(t)
        return self.month_count if self.month == year * 12 + month else 0

    def title_downloads(self, title: int, t: int) -> int:
        return self.title_counts.get(title, 0) if self.year == year_month(t)[0] else 0

    def count_download(self, title: int, t: int, limited: bool) -> None:
        year, month = year_month(t)
        key = year * 12 + month
        if self.month != key:
            self.month, self.month_count = key, 0
        self.month_count += 1
        if limited:
            if self.year != year:
                self.year, self.title_counts = year, {}
            self.title_counts[title] = self.title_counts.get(title, 0) + 1

    def new_device(self) -> str:
        device = f"{self.mid}-d{self.next_device}"
        self.next_device += 1
        return device

    def register(self, device: str, in_use: dict[str, int]) -> None:
        if device in self.devices:
            return
        self.devices.append(device)
        if len(self.devices) > MAX_DEVICES:
            for old in self.devices:
                if old not in in_use and old != device:
                    self.devices.remove(old)
                    break

    def remember(self, lic: _License, t: int) -> None:
        licenses = self.licenses
        licenses.append(lic)
        if len(licenses) > KEEP_INACTIVE * 2:
            inactive = [x for x in licenses if x.released or x.expires <= t]
            if len(inactive) > KEEP_INACTIVE:
                for old in inactive[:-KEEP_INACTIVE]:
                    licenses.remove(old)
            elif len(licenses) > MAX_LICENSES:
                licenses.remove(inactive[0] if inactive else licenses[0])


# --- the generator -----------------------------------------------------------------------------


class _Generator:
    def __init__(self, config: WorkloadConfig) -> None:
        self.config = config
        self.rng = rng = random.Random(config.seed)
        self.random = rng.random
        self.catalogue = Catalogue(rng, config.titles, config.zipf_exponent)
        members = config.members
        self.member_by_rank = list(range(members))
        rng.shuffle(self.member_by_rank)
        weights = [1.0] * members if config.member_skew == 0 else [
            rank ** -config.member_skew for rank in range(1, members + 1)
        ]
        self._member_cum = list(itertools.accumulate(weights))
        self._member_total = self._member_cum[-1]
        self.members: list[_Member | None] = [None] * members
        self.recent: list[DownloadEvent] = []
        self.binges: collections.deque[list] = collections.deque()  # [member, events left] of sessions
        self.prefix = config.id_prefix
        self.seed = config.seed
        self.break_probability = self._break_probability(weights)
        # a good action and what the member does instead when it is not possible
        self._after_acquire = (self._acquire, self._release, self._change_plan)
        self._after_renew = (self._renew, self._acquire, self._release, self._change_plan)
        self._after_release = (self._release, self._acquire, self._change_plan)
        self._after_deactivate = (self._deactivate, self._acquire, self._change_plan)
        self._after_change_plan = (self._change_plan,)

    def _break_probability(self, weights: list[float]) -> float:
        """Per-item probability of drawing a limit-breaking item so that `share_limit_breaking` of the
        items are limit-breaking, although a draw that lands on a member's first event yields the
        member's initial PlanChanged instead (the expected number of first events is known upfront)."""
        c = self.config
        share = c.share_limit_breaking
        member_draws = c.events * (1 - c.share_malformed - c.share_undecodable - c.share_duplicates)
        if share == 0 or member_draws <= 0:
            return share
        scale = member_draws / self._member_total
        firsts = sum(1 - math.exp(-w * scale) for w in weights)  # expected distinct members drawn
        first_fraction = min(firsts / member_draws, 0.999)
        return min(share / (1 - first_fraction), 1 - c.share_malformed - c.share_undecodable - c.share_duplicates)

    # -- the loop --

    def items(self) -> Iterator[Item]:
        c = self.config
        r = self.random
        n = c.events
        p_undecodable = c.share_undecodable
        p_malformed = p_undecodable + c.share_malformed
        p_duplicate = p_malformed + c.share_duplicates
        p_breaking = p_duplicate + self.break_probability
        p_late = c.share_late
        start, span = c.start_ms, c.span_ms
        recent = self.recent
        members = self.members
        binges = self.binges
        bisect_right = bisect.bisect_right
        member_cum, member_total, member_by_rank = self._member_cum, self._member_total, self.member_by_rank
        n_members = len(member_by_rank)
        for i in range(n):
            occurred_at = start + span * i // n + int(r() * 10_000)
            if r() < p_late:
                occurred_at -= MINUTE_MS + int(r() * r() * 3 * DAY_MS)
                if occurred_at < 0:
                    occurred_at = 0
            u = r()
            if p_malformed <= u < p_duplicate and recent:
                event = recent[int(r() * len(recent))]
                yield Item(ItemKind.DUPLICATE, event.member_id, event, None, "resend")
                continue
            if u >= p_malformed and binges and r() < BINGE_SHARE:
                session = binges[0]
                m = session[0]
                session[1] -= 1
                if session[1] <= 0:
                    binges.popleft()
                    m.binge_device = None
            else:
                rank = bisect_right(member_cum, r() * member_total)
                index = member_by_rank[rank if rank < n_members else n_members - 1]
                m = members[index]
                if m is None:
                    m = members[index] = _Member(c.member_id(index))
                if u < p_malformed:
                    yield self._bad(m, i, occurred_at, u < p_undecodable)
                    continue
            if u < p_breaking and m.started:
                item = self._breaking_somewhere(m, i, occurred_at)
            else:
                t = m.clock if m.clock > occurred_at else occurred_at
                m.clock = t
                if m.started:
                    item = self._good(m, i, occurred_at, t)
                else:
                    item = self._initial_plan(m, i, occurred_at)
            if len(recent) < RECENT_EVENTS:
                recent.append(item.event)
            else:
                recent[i % RECENT_EVENTS] = item.event
            yield item

    def _pick_member(self, u: float) -> int:
        rank = bisect.bisect_right(self._member_cum, u * self._member_total)
        return self.member_by_rank[rank if rank < len(self.member_by_rank) else -1]

    # -- ids and payloads --

    def _event_id(self, i: int) -> str:
        return f"{self.prefix}e{self.seed}-{i}"

    def _license_id(self, i: int) -> str:
        return f"{self.prefix}l{self.seed}-{i}"

    def _duration(self) -> int:
        return LICENSE_DURATIONS_MS[int(self.random() * len(LICENSE_DURATIONS_MS))]

    def _acquisition(self, lid: str, device: str, title: int, expires: int) -> LicenseAcquired:
        cat = self.catalogue
        return LicenseAcquired(
            lid, device, cat.title_ids[title], cat.studio_ids[cat.studio[title]], expires,
            cat.yearly_limit[title], cat.studio_limit[title], cat.max_renewals[title],
            QUALITIES[int(self.random() * len(QUALITIES))],
        )

    def _draw_plan(self) -> tuple:
        return PLANS[bisect.bisect_right(_PLAN_CUM, self.random() * _PLAN_CUM[-1])]

    def _item(self, kind: ItemKind, m: _Member, i: int, occurred_at: int, made: tuple) -> Item:
        intent, payload, producer = made
        return Item(kind, m.mid, DownloadEvent(self._event_id(i), m.mid, occurred_at, producer, payload), None, intent)

    # -- bad input --

    def _bad(self, m: _Member, i: int, occurred_at: int, undecodable: bool) -> Item:
        title = self.catalogue.pick(self.random())
        device = m.devices[0] if m.devices else f"{m.mid}-d1"
        payload = self._acquisition(self._license_id(i), device, title, occurred_at + 7 * DAY_MS)
        template = DownloadEvent(self._event_id(i), m.mid, occurred_at, LICENSE_PRODUCER, payload)
        if undecodable:
            variant, raw = bad_input.undecodable_bytes(self.rng, template)
            return Item(ItemKind.UNDECODABLE, m.mid, None, raw, variant)
        variant, event = bad_input.malformed_event(self.rng, template)
        return Item(ItemKind.MALFORMED, m.mid, event, None, variant)

    # -- good events --

    def _initial_plan(self, m: _Member, i: int, occurred_at: int) -> Item:
        m.started = True
        m.plan = plan = self._draw_plan()
        payload = PlanChanged(plan[0], plan[1], plan[2], plan[3])
        return self._item(ItemKind.GOOD, m, i, occurred_at, ("initial_plan", payload, PLAN_PRODUCER))

    def _good(self, m: _Member, i: int, occurred_at: int, t: int) -> Item:
        u = self.random()
        if u < _ACQUIRE:
            order = self._after_acquire
        elif u < _RENEW:
            order = self._after_renew
        elif u < _RELEASE:
            order = self._after_release
        elif u < _DEACTIVATE:
            order = self._after_deactivate
        else:
            order = self._after_change_plan
        for action in order:
            made = action(m, i, occurred_at, t)
            if made is not None:
                return self._item(ItemKind.GOOD, m, i, occurred_at, made)
        raise AssertionError("a plan change is always possible")

    def _title_with_room(self, m: _Member, t: int) -> int | None:
        cat = self.catalogue
        for _ in range(3):
            title = cat.pick(self.random())
            yearly = cat.yearly_limit[title]
            if yearly is not None and m.title_downloads(title, t) >= yearly:
                continue
            studio_limit = cat.studio_limit[title]
            if studio_limit is not None and self._studio_active(m, cat.studio[title], t) >= studio_limit:
                continue
            return title
        return None

    def _studio_active(self, m: _Member, studio: int, t: int) -> int:
        of_studio = self.catalogue.studio
        return sum(1 for lic in m.licenses if not lic.released and lic.expires > t and of_studio[lic.title] == studio)

    def _device_with_room(self, m: _Member, counts: dict[str, int], fresh_bias: float) -> str | None:
        """An in-use device below downloads_per_device, or (with probability `fresh_bias`, or when no
        in-use device has room) an idle or new device while the plan's device limit allows one."""
        r = self.random
        room = [d for d, c in counts.items() if c < m.plan[2]]
        if len(counts) < m.plan[1] and (not room or r() < fresh_bias):
            for device in m.devices:
                if device not in counts:
                    return device
            return m.new_device()
        if room:
            return room[int(r() * len(room))]
        return None

    def _acquire(self, m: _Member, i: int, occurred_at: int, t: int):
        monthly = m.plan[3]
        if monthly is not None and m.month_downloads(t) >= monthly:
            return None
        counts = m.active_by_device(t)
        device = m.binge_device
        if device is None or counts.get(device, 0) >= m.plan[2] or (device not in counts and len(counts) >= m.plan[1]):
            device = self._device_with_room(m, counts, 0.15)
            if device is None:
                return None
        title = self._title_with_room(m, t)
        if title is None:
            return None
        expires = max(occurred_at + self._duration(), t + HOUR_MS)
        lid = self._license_id(i)
        m.register(device, counts)
        m.remember(_License(lid, device, title, expires), t)
        m.count_download(title, t, self.catalogue.yearly_limit[title] is not None)
        if m.binge_device is None and self.random() < BINGE_START:
            m.binge_device = device
            self.binges.append([m, BINGE_LENGTH[0] + int(self.random() * (BINGE_LENGTH[1] - BINGE_LENGTH[0]))])
        return "acquire", self._acquisition(lid, device, title, expires), LICENSE_PRODUCER

    def _renew(self, m: _Member, i: int, occurred_at: int, t: int):
        monthly = m.plan[3]
        if monthly is not None and m.month_downloads(t) >= monthly:
            return None
        cat = self.catalogue
        candidates = []
        for lic in m.licenses:
            if lic.released or lic.expires <= t:
                continue
            most = cat.max_renewals[lic.title]
            if most is not None and lic.renewals >= most:
                continue
            yearly = cat.yearly_limit[lic.title]
            if yearly is not None and m.title_downloads(lic.title, t) >= yearly:
                continue
            candidates.append(lic)
        if not candidates:
            return None
        lic = candidates[int(self.random() * len(candidates))]
        lic.expires = max(lic.expires, t) + self._duration()
        lic.renewals += 1
        m.count_download(lic.title, t, cat.yearly_limit[lic.title] is not None)
        return "renew", LicenseRenewed(lic.lid, lic.expires), LICENSE_PRODUCER

    def _release(self, m: _Member, i: int, occurred_at: int, t: int):
        candidates = [lic for lic in m.licenses if not lic.released]
        if not candidates:
            return None
        lic = candidates[int(self.random() * len(candidates))]
        if lic.expires <= t:
            reason = "EXPIRED"
        else:
            reason = "REVOKED" if self.random() < 0.1 else "DELETED"
        lic.released = True
        return f"release:{reason}", LicenseReleased(lic.lid, reason), LICENSE_PRODUCER

    def _deactivate(self, m: _Member, i: int, occurred_at: int, t: int):
        if not m.devices:
            return None
        device = m.devices.pop(int(self.random() * len(m.devices)))
        for lic in m.licenses:
            if lic.device == device:
                lic.released = True
        return "deactivate", DeviceDeactivated(device), DEVICE_PRODUCER

    def _change_plan(self, m: _Member, i: int, occurred_at: int, t: int):
        plan = self._draw_plan()
        if plan is m.plan:
            plan = PLANS[(PLANS.index(plan) + 1) % len(PLANS)]
        m.plan = plan
        return "change_plan", PlanChanged(plan[0], plan[1], plan[2], plan[3]), PLAN_PRODUCER

    # -- limit-breaking events --

    def _breaking_somewhere(self, m: _Member, i: int, occurred_at: int) -> Item:
        """A limit-breaking event of `m`, or of one of a few other active members when `m` cannot
        break a limit right now (a light member rarely can: it is the heavy users who hit limits).
        When none can, `m` sends an event that breaks a rule of another kind (expired, unknown...)."""
        candidates = [m]
        for _ in range(BREAK_TRIES - 1):
            other = self.members[self._pick_member(self.random())]
            if other is not None and other.started and other is not m:
                candidates.append(other)
        for limits_only in (True, False) if self.random() >= OTHER_BREAKS else (False,):
            for member in candidates if limits_only else candidates[:1]:
                t = member.clock if member.clock > occurred_at else occurred_at
                item = self._breaking(member, i, occurred_at, t, limits_only)
                if item is not None:
                    member.clock = t
                    return item
        raise AssertionError("an expired or unknown license can always be sent")

    def _breaking(self, m: _Member, i: int, occurred_at: int, t: int, limits_only: bool) -> Item | None:
        """A well-formed event shaped from the member model to break one rule (see BREAK_WEIGHTS);
        None when `limits_only` and no limit of the member can be broken right now."""
        cat = self.catalogue
        r = self.random
        plan = m.plan
        counts = m.active_by_device(t)
        full_devices = [d for d, c in counts.items() if c >= plan[2]]
        over_renewed = []
        released = []
        studio_active: dict[int, int] = {}
        for lic in m.licenses:
            if lic.released:
                released.append(lic)
                continue
            most = cat.max_renewals[lic.title]
            if most is not None and lic.renewals >= most:
                over_renewed.append(lic)
            if lic.expires > t and cat.studio_limit[lic.title] is not None:
                studio = cat.studio[lic.title]
                studio_active[studio] = studio_active.get(studio, 0) + 1
        full_studios = [s for s, n in studio_active.items() if n >= cat.studio_limit[cat.studio_titles[s][0]]]
        over_titles = []
        if m.title_counts and m.year == year_month(t)[0]:
            over_titles = [title for title, n in m.title_counts.items() if n >= cat.yearly_limit[title]]
        feasible = {
            "extra_device": bool(counts) and len(counts) >= plan[1],
            "device_full": bool(full_devices),
            "renewal_max": bool(over_renewed),
            "title_year": bool(over_titles),
            "studio": bool(full_studios),
            "monthly": plan[3] is not None and m.month_downloads(t) >= plan[3],
            "expired": True,
            "unknown_license": True,
            "released_license": bool(released),
            "license_conflict": bool(m.licenses),
        }
        options = [(name, weight) for name, weight in BREAK_WEIGHTS.items()
                   if feasible[name] and (name in LIMIT_BREAKS) == limits_only]
        if not options:
            return None
        x = r() * sum(weight for _, weight in options)
        for intent, weight in options:  # noqa: B007 - intent is the loop's result
            x -= weight
            if x < 0:
                break
        expires = max(occurred_at + self._duration(), t + HOUR_MS)
        lid = self._license_id(i)

        def acquire(device: str | None, title: int, expires: int = expires, lid: str = lid) -> tuple:
            if device is None:  # no device with room: any device in use (or a new one)
                device = next(iter(counts), None) or m.new_device()
            return intent, self._acquisition(lid, device, title, expires), LICENSE_PRODUCER

        if intent == "extra_device":
            made = acquire(m.new_device(), cat.pick(r()))
        elif intent == "device_full":
            made = acquire(full_devices[int(r() * len(full_devices))], cat.pick(r()))
        elif intent == "renewal_max":
            lic = over_renewed[int(r() * len(over_renewed))]
            made = intent, LicenseRenewed(lic.lid, max(lic.expires, t) + self._duration()), LICENSE_PRODUCER
        elif intent == "title_year":
            made = acquire(self._device_with_room(m, counts, 0.0), over_titles[int(r() * len(over_titles))])
        elif intent == "studio":
            titles = cat.studio_titles[full_studios[int(r() * len(full_studios))]]
            made = acquire(self._device_with_room(m, counts, 0.0), titles[int(r() * len(titles))])
        elif intent == "monthly":
            title = self._title_with_room(m, t)
            made = acquire(self._device_with_room(m, counts, 0.0), cat.pick(r()) if title is None else title)
        elif intent == "expired":
            past = t - MINUTE_MS - int(r() * 5 * DAY_MS)
            renewable = [lic for lic in m.licenses if not lic.released and lic not in over_renewed]
            if renewable and r() < 0.3:
                made = intent, LicenseRenewed(renewable[int(r() * len(renewable))].lid, past), LICENSE_PRODUCER
            else:
                made = acquire(self._device_with_room(m, counts, 0.0), cat.pick(r()), expires=past)
        elif intent == "unknown_license":
            unknown = f"{self.prefix}l{self.seed}-u{i}"
            if r() < 0.5:
                made = intent, LicenseReleased(unknown, "DELETED"), LICENSE_PRODUCER
            else:
                made = intent, LicenseRenewed(unknown, expires), LICENSE_PRODUCER
        elif intent == "released_license":
            lic = released[int(r() * len(released))]
            if r() < 0.7:
                made = intent, LicenseReleased(lic.lid, "DELETED"), LICENSE_PRODUCER
            else:
                made = intent, LicenseRenewed(lic.lid, expires), LICENSE_PRODUCER
        else:  # license_conflict
            lic = m.licenses[int(r() * len(m.licenses))]
            made = acquire(lic.device, cat.pick(r()), lid=lic.lid)
        return self._item(ItemKind.BREAKING, m, i, occurred_at, made)
