"""`ledger topics diff|apply`: make the cluster's topics match topics/*.yaml."""
from __future__ import annotations

from app.adapters.kafka import topic_admin
from app.adapters.kafka.topic_spec import TopicSpecError, load_specs, plan
from app.config import REPO_ROOT
from app.entrypoints.commands.errors import CommandError

DRIFT_EXIT = 2  # `topics diff --exit-code`: the cluster differs from topics/ (1 stays "error or refused")


def register(sub) -> None:
    p = sub.add_parser("topics", help="show or apply the topic definitions in topics/")
    p.add_argument("action", choices=["diff", "apply"])
    p.add_argument("--dir", default=str(REPO_ROOT / "topics"), help="folder of topic YAML files")
    p.add_argument("--exit-code", action="store_true",
                   help="diff: exit 2 when the cluster differs from the files (a check, e.g. where Strimzi owns the topics)")
    p.set_defaults(handler=run)


def run(args, settings) -> int:
    from pathlib import Path

    from app import bootstrap

    try:
        specs = load_specs(Path(args.dir), settings.environment)
        admin = bootstrap.kafka_admin(settings)
        actual = topic_admin.describe(admin, [s.name for s in specs])
    except TopicSpecError as exc:
        raise CommandError(str(exc)) from None
    except Exception as exc:
        raise CommandError(f"cannot read topics from {settings.kafka_bootstrap}: {exc}") from None
    changes = plan(specs, actual)
    for line in changes.describe():
        print(line)
    if args.action == "diff":
        if changes.empty and not changes.refused:
            print("no drift: the cluster matches topics/")
        if changes.refused:
            return 1
        return DRIFT_EXIT if args.exit_code and not changes.empty else 0
    if changes.refused:
        raise CommandError("refusing to apply: " + "; ".join(changes.refused))
    if changes.empty:
        print("nothing to change")
        return 0
    try:
        topic_admin.apply(admin, changes, specs)
    except Exception as exc:
        raise CommandError(f"apply failed: {exc}") from None
    print(f"applied {len(changes.describe())} change(s)")
    return 0
