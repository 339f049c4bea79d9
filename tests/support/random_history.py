"""A seeded random history for the crash tests: enough members and events to span many batches,
with limits tight enough that rejections (and so rejected-then-freed slots) are common."""
from __future__ import annotations

import random

from tests.support.domain_builders import DAY, HOUR, T0, acquire, deactivate, event, plan, release, renew


def random_history(prefix: str, members: int = 60, events: int = 3000, seed: int = 7):
    rng = random.Random(seed)
    clocks = {f"{prefix}-m{i}": T0 for i in range(members)}
    licenses: dict[str, list[str]] = {m: [] for m in clocks}
    out = [event(plan(device_limit=rng.choice([1, 2, 4]), downloads_per_device=rng.choice([2, 5]),
                      monthly_limit=rng.choice([None, None, 20])), at=T0, member=m, event_id=f"{m}-plan")
           for m in clocks]
    for n in range(events):
        m = rng.choice(list(clocks))
        clocks[m] += rng.randint(1, 6 * HOUR)
        at = clocks[m] - (DAY if rng.random() < 0.03 else 0)
        roll = rng.random()
        held = licenses[m]
        if roll < 0.55 or not held:
            lid = f"l{n}"
            held.append(lid)
            payload = acquire(lid, device=f"d{rng.randint(1, 4)}", title=f"t{rng.randint(1, 8)}",
                              studio=f"s{rng.randint(1, 3)}", expires=at + rng.randint(HOUR, 20 * DAY),
                              title_yearly_limit=rng.choice([None, 3]), studio_concurrent_limit=rng.choice([None, 2]),
                              max_renewals=rng.choice([None, 1]))
        elif roll < 0.75:
            payload = renew(rng.choice(held), expires=at + rng.randint(-HOUR, 20 * DAY))
        elif roll < 0.95:
            payload = release(rng.choice(held), reason=rng.choice(["DELETED", "EXPIRED", "REVOKED"]))
        else:
            payload = deactivate(f"d{rng.randint(1, 4)}")
        out.append(event(payload, at=at, member=m, event_id=f"{m}-{n}"))
    return out
