"""Memory: peak RSS (VmHWM) of a worker as the number of members grows, with the cache size fixed.

The first point is the end-to-end run's worker (read right after its throughput phase, before the
latency phase); the second is a worker on a pipeline of its own with ten times the members (1M by
default) and the same number of events, batch size and cache size. Each worker is a fresh
`ledger worker --role all` process, so VmHWM is the peak of that run alone.

Bounded means: the larger run's peak stays within ``BOUND_RATIO`` of the smaller one's although it
touched many more members, and both caches were full (more members touched than the cache holds),
so what grows with members would have shown.
"""
from __future__ import annotations

BOUND_RATIO = 1.25


def point(label: str, members: int, events: int, cache_size: int, batch_size: int, partitions: int,
          throughput: dict) -> dict:
    touched = throughput.get("members_touched") or throughput.get("members_with_views")
    return {
        "label": label,
        "members": members,
        "members_touched": touched,
        "events": events,
        "cache_size": cache_size,
        "batch_size": batch_size,
        "partitions": partitions,
        "cache_full": touched is not None and touched > cache_size,
        "vm_hwm_bytes": throughput["worker_vm_hwm_bytes"],
        "vm_hwm_mib": round(throughput["worker_vm_hwm_bytes"] / 2**20, 1),
        "throughput": throughput["rate"],
    }


def verdict(small: dict, large: dict) -> dict:
    ratio = large["vm_hwm_bytes"] / small["vm_hwm_bytes"] if small["vm_hwm_bytes"] else None
    members_ratio = large["members"] / small["members"]
    touched_ratio = (large["members_touched"] / small["members_touched"]
                     if small.get("members_touched") and large.get("members_touched") else None)
    extra_per_member = None
    if small.get("members_touched") and large.get("members_touched") and large["members_touched"] > small["members_touched"]:
        extra_per_member = (large["vm_hwm_bytes"] - small["vm_hwm_bytes"]) / (
            large["members_touched"] - small["members_touched"])
    bounded = ratio is not None and ratio <= BOUND_RATIO and small["cache_full"] and large["cache_full"]
    return {
        "hwm_ratio": ratio,
        "members_ratio": members_ratio,
        "members_touched_ratio": touched_ratio,
        "extra_bytes_per_extra_member_touched": extra_per_member,
        "bound_ratio": BOUND_RATIO,
        "bounded": bounded,
    }
