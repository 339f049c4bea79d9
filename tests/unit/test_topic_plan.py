from app.adapters.kafka.topic_spec import ActualTopic, TopicSpec, load_specs, plan
from app.config import REPO_ROOT


def spec(partitions=12, **config):
    return TopicSpec("t", partitions, 1, {"retention.ms": "1", **config})


def test_missing_topic_is_created():
    assert plan([spec()], {}).create == [spec()]


def test_matching_topic_needs_nothing():
    assert plan([spec()], {"t": ActualTopic("t", 12, {"retention.ms": "1", "other": "x"})}).empty


def test_partitions_are_raised_never_lowered():
    raised = plan([spec(12)], {"t": ActualTopic("t", 6, {"retention.ms": "1"})})
    assert raised.add_partitions == [("t", 6, 12)]
    lowered = plan([spec(3)], {"t": ActualTopic("t", 6, {"retention.ms": "1"})})
    assert lowered.add_partitions == [] and "lowering partitions 6 -> 3" in lowered.refused[0]


def test_config_drift_is_planned_as_an_alteration():
    p = plan([spec()], {"t": ActualTopic("t", 12, {"retention.ms": "5"})})
    assert p.alter_config == [("t", "retention.ms", "5", "1")]


def test_repository_topics_have_local_overrides():
    specs = {s.name: s for s in load_specs(REPO_ROOT / "topics", "local")}
    assert set(specs) == {"downloads.events", "downloads.ledger", "downloads.rejections", "downloads.dlq"}
    assert all(s.replication_factor == 1 and s.config["min.insync.replicas"] == "1" for s in specs.values())
    assert specs["downloads.events"].config["retention.ms"] == "604800000"
    assert specs["downloads.ledger"].config["retention.ms"] == "-1"
    production = {s.name: s for s in load_specs(REPO_ROOT / "topics", "production")}
    assert production["downloads.ledger"].replication_factor == 3
