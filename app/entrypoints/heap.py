"""The garbage collector of a long-running ledger process (`ledger worker`, `ledger api`, `ledger replay`).

CPython's defaults suit short scripts: a young collection every 700 net container allocations, and a
full collection once enough objects have been promoted. A worker allocates decoded events, states
and statements by the hundred thousand per micro-batch and keeps a member cache of long-lived
states. With the defaults, objects that die with their micro-batch still outlive two young
collections and are promoted, so full collections come every second or two, and each walks every
object the process holds, the cache included, with the event loop stopped. Measured on a bench run
of 20,000 events: 26 full collections, 4.8 s of the worker's 40 s of CPU, the longest 431 ms; all
collections together 18% of the worker's CPU. The read API's full collections each walked its
start-up objects: about 50 ms each, 16 in a minute at its maximum rate.

``settle()``, called once start-up is done and before serving:
- collects, then freezes what start-up built (modules, the Faust or FastAPI app, the drivers): no
  later collection walks those objects again;
- raises the young threshold to ``YOUNG_THRESHOLD``: most of a micro-batch's or a request's objects
  are gone before a collection sees them, so few are promoted and full collections become rare.

A frozen object that later becomes cyclic garbage is never freed (a driver connection replaced after
a node loss, say). That happens to start-up objects only, each at most once, so it cannot grow.
Measured on CPython 3.11; later versions change what the thresholds mean, so measure again there.
"""
from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def settle() -> None:
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
