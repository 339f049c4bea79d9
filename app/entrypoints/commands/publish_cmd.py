"""`ledger publish FILE.jsonl`: validate events written as JSON lines and publish the good ones."""
from __future__ import annotations

import json
import sys

from app.entrypoints.commands.errors import CommandError


def register(sub) -> None:
    p = sub.add_parser("publish", help="validate and publish events from a JSON-lines file ('-' for stdin)")
    p.add_argument("file")
    p.add_argument("--topic", help="default: LEDGER_EVENTS_TOPIC")
    p.set_defaults(handler=run)


def run(args, settings) -> int:
    from app import bootstrap
    from app.adapters.json_events import event_from_json
    from app.adapters.kafka.producer import PublishError
    from app.domain.validation import MalformedEvent

    try:
        lines = sys.stdin.readlines() if args.file == "-" else open(args.file, encoding="utf-8").readlines()
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror}") from None
    events, refused = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(event_from_json(json.loads(line)))
        except json.JSONDecodeError as exc:
            refused.append((number, "not_json", exc.msg))
        except MalformedEvent as exc:
            refused.append((number, exc.code, exc.detail))
    for number, code, detail in refused:
        print(f"line {number}: refused ({code}): {detail}", file=sys.stderr)
    publisher = bootstrap.event_publisher(settings, args.topic)
    try:
        published = publisher.publish(events)
    except PublishError as exc:
        raise CommandError(f"publishing to {settings.kafka_bootstrap} failed: {exc}") from None
    finally:
        publisher.close()
    print(f"published {published} event(s) to {args.topic or settings.events_topic}; refused {len(refused)}")
    return 1 if refused else 0
