"""Tracing switched off: the services' default `Tracer`, which records nothing and carries nothing."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext

from app.domain.history import Source
from app.service.ports import BatchTrace, Headers, InputMessage


class _NoBatchTrace:
    def stage(self, name: str) -> AbstractContextManager[None]:
        return nullcontext()

    def carry(self) -> dict[Source, Headers]:
        return {}


NO_BATCH_TRACE = _NoBatchTrace()


class NoTracer:
    @contextmanager
    def batch(self, stage: str, messages: Sequence[InputMessage]) -> Iterator[BatchTrace]:
        yield NO_BATCH_TRACE


NO_TRACER = NoTracer()
