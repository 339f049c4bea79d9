"""deploy/k8s/ checked without a cluster.

- The overlay is rendered with tools/k8s/kustomize.py (Debian packages no current kubectl), and the
  render is compared with `kubectl kustomize` wherever kubectl is installed.
- Every core object is validated with kubernetes-validate (strict: unknown fields are errors), for the
  oldest Kubernetes Strimzi 1.2 supports and the newest kubernetes-validate knows.
- Every custom resource is validated with jsonschema against the openAPIV3Schema of its CRD's served
  version, checked in under deploy/k8s/schemas/ (tools/k8s/crd_schema.py; CEL rules not evaluated).
- The KafkaTopics are what tools/k8s/topics.py generates from topics/*.yaml.
- The pieces agree with each other and with the application: every LEDGER_* setting is given, the
  addresses in the ConfigMap are the Services the operators create, the datacenter is the one the
  keyspace replicates to, the ACLs name real topics and groups, probes hit the worker's metrics port.
"""
from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from app import bootstrap
from app.adapters.cassandra import migrations
from app.config import REPO_ROOT, Settings
from tests.support.kafka_acls import expected_kafka_acls
from tools.k8s import crd_schema, topics
from tools.k8s.kustomize import identity, render

K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = {"production": K8S / "overlays" / "production"}
# Strimzi 1.2 supports Kubernetes 1.30 and newer; 1.37 is the newest kubernetes-validate 1.37.0 knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
WORKER_ROLES = ("decider", "projector")
# Settings a container sets in its own env (never the ConfigMap, whose value would be overridden), and why.
PER_WORKLOAD_SETTINGS = {
    "api_tokens_file": "the Secret ledger-api-tokens mounted as a file, API container only",
    "consumer_group_instance_id": "per pod: the worker StatefulSets pass the pod name (static membership)",
    "kafka_sasl_username": "one Kafka principal per component: the name of its KafkaUser",
    "kafka_sasl_password_file": "the component's KafkaUser Secret, mounted only where it logs in",
    "cassandra_username": "one Cassandra role per component (cassandra-grants.yaml)",
    "cassandra_password_file": "the component's Cassandra login Secret, mounted only where it logs in",
    "redis_username": "one Redis ACL user per component (redis.yaml, users.acl)",
    "redis_password_file": "the component's key of ledger-redis-users, mounted only where it logs in",
}
SECRET_SETTINGS = {name: f"a Secret mounted as a file: {name}_file"
                   for name in ("kafka_sasl_password", "cassandra_password", "redis_password", "api_tokens")}
# Settings the manifests do not give through the ConfigMap, and where each comes from instead.
NOT_IN_CONFIGMAP = {
    **PER_WORKLOAD_SETTINGS,
    **SECRET_SETTINGS,
    **{f"{store}_ssl_{part}_file": "no client certificate: every login is a password over TLS"
       for store in ("kafka", "cassandra", "redis") for part in ("cert", "key")},
    "stack_dir": "the local stack only",
    "count_statements_to": "the bench only: counts a worker's Cassandra statements",
    "api_metrics_port": "unset: the API's /metrics stays on its http port, where Prometheus scrapes it",
    "otlp_endpoint": "OpenTelemetry's own OTEL_EXPORTER_OTLP_ENDPOINT, set beside LEDGER_TRACING=otlp",
}
# Which principal each ledger workload logs in as, per store (None: it never connects to that store).
PRINCIPALS = {
    "ledger-decider": {"kafka": "ledger-decider", "cassandra": "ledger_decider", "redis": None},
    "ledger-projector": {"kafka": "ledger-projector", "cassandra": "ledger_projector", "redis": "ledger-projector"},
    "ledger-api": {"kafka": None, "cassandra": "ledger_api", "redis": "ledger-api"},
    "ledger-tools": {"kafka": "ledger-tools", "cassandra": "ledger_tools", "redis": "ledger-tools"},
    "ledger-topics-check": {"kafka": "ledger-topics-check", "cassandra": None, "redis": None},
    "ledger-migrate": {"kafka": None, "cassandra": "superuser", "redis": None},
}

@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def overlay(request):
    name = request.param
    return name, render(OVERLAYS[name])


def find(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''} in the render"
    return found if name is None else found[0]


def config(objects) -> dict[str, str]:
    return find(objects, "ConfigMap", "ledger-config")["data"]


def pod_templates(objects):
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield o, o["spec"]["template"]


def containers(template) -> list[dict]:
    return template["spec"].get("initContainers", []) + template["spec"]["containers"]


def settings_of(objects) -> Settings:
    return Settings(**{k.removeprefix("LEDGER_").lower(): v for k, v in config(objects).items()})


def ledger_workloads(objects):
    """(workload, its one ledger container's env by name, the container, the pod template), every
    container of the template alike (the migrate Job's two run the same login)."""
    for workload, template in pod_templates(objects):
        for container in containers(template):
            if container["image"].split("/")[-1].split(":")[0] == "download-ledger":
                yield workload, {e["name"]: e for e in container.get("env", [])}, container, template


def mounted_file(template, container, path: str) -> tuple[str, str, str]:
    """(volume kind, Secret or ConfigMap name, key) of the file ``path`` in ``container``."""
    directory, _, filename = path.rpartition("/")
    mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"].rstrip("/") == directory]
    assert len(mounts) == 1, f"{container['name']}: nothing mounted at {directory} for {path}"
    [volume] = [v for v in template["spec"]["volumes"] if v["name"] == mounts[0]["name"]]
    for kind, name_field in (("secret", "secretName"), ("configMap", "name")):
        if kind in volume:
            source = volume[kind]
            items = {i["path"]: i["key"] for i in source.get("items", [])}
            assert not items or filename in items, f"{container['name']}: {path} is not among the volume's items"
            return kind, source[name_field], items.get(filename, filename)
    raise AssertionError(f"{container['name']}: {path} is not from a Secret or a ConfigMap: {volume}")


def crd_schemas() -> dict[tuple[str, str], dict]:
    schemas = {}
    for path in sorted((K8S / "schemas").glob("*.json")):
        schema = json.loads(path.read_text())
        props = schema["properties"]
        schemas[(props["apiVersion"]["const"], props["kind"]["const"])] = schema
    return schemas


# --- rendering and generation ----------------------------------------------------------------

def test_generated_kafka_topics_match_the_topic_files(overlay):
    name, objects = overlay
    generated = {p: env for p, env in topics.GENERATED.items() if OVERLAYS[name] in (REPO_ROOT / p).parents}
    assert generated, f"overlay {name} has no generated KafkaTopics"
    for relative, environment in generated.items():
        assert (REPO_ROOT / relative).read_text() == topics.render(environment), (
            f"{relative} is stale: run python -m tools.k8s.topics")
        assert config(objects)["LEDGER_ENVIRONMENT"] == environment
    kafka_topics = {t["spec"]["topicName"]: t["spec"] for t in find(objects, "KafkaTopic")}
    from app.adapters.kafka.topic_spec import load_specs
    specs = load_specs(REPO_ROOT / "topics", config(objects)["LEDGER_ENVIRONMENT"])
    assert kafka_topics == {s.name: {"topicName": s.name, "partitions": s.partitions, "replicas": s.replication_factor,
                                     "config": s.config} for s in specs}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl here: the Python render is not cross-checked")
@pytest.mark.parametrize("directory", [K8S / "base", *OVERLAYS.values()], ids=lambda p: p.name)
def test_python_render_equals_kubectl_kustomize(directory):
    out = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    theirs = {identity(o): o for o in yaml.safe_load_all(out.stdout) if o}
    ours = {identity(o): o for o in render(directory)}
    assert ours == theirs


# --- schemas -----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_objects_are_valid_kubernetes(overlay, version):
    _, objects = overlay
    custom = crd_schemas()
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in custom:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} at {list(exc.absolute_path)}: {exc.message}")


def test_custom_resources_match_their_crd_schema(overlay):
    _, objects = overlay
    schemas = crd_schemas()
    assert {k for _, k in schemas} == {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "CassandraDatacenter"}
    checked = set()
    for obj in objects:
        schema = schemas.get((obj["apiVersion"], obj["kind"]))
        if obj["apiVersion"].endswith((".strimzi.io/v1", ".datastax.com/v1beta1")):
            assert schema, f"{obj['kind']} {obj['apiVersion']}: no schema in deploy/k8s/schemas/"
        if schema is None:
            continue
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in jsonschema.Draft202012Validator(schema).iter_errors(obj)]
        assert not errors, f"{obj['kind']}/{obj['metadata']['name']}: {errors}"
        checked.add(obj["kind"])
    assert checked == {k for _, k in schemas}


def test_the_validators_reject_a_misspelt_or_mistyped_field(overlay):
    """The two checks above would pass vacuously if the schemas were open: they are not."""
    _, objects = overlay
    decider = copy.deepcopy(find(objects, "StatefulSet", "ledger-decider"))
    decider["spec"]["template"]["spec"]["containers"][0]["resourses"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(decider, KUBERNETES_VERSIONS[-1], strict=True)
    schemas = crd_schemas()
    kafka = copy.deepcopy(find(objects, "Kafka", "ledger"))
    kafka["spec"]["kafka"]["listners"] = kafka["spec"]["kafka"].pop("listeners")
    topic = copy.deepcopy(find(objects, "KafkaTopic")[0])
    topic["spec"]["partitions"] = "12"
    user = copy.deepcopy(find(objects, "KafkaUser")[0])
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Reed"]
    cassandra = copy.deepcopy(find(objects, "CassandraDatacenter")[0])
    cassandra["spec"]["storageConfig"]["cassandraDataVolumeClaimSpec"]["acessModes"] = ["ReadWriteOnce"]
    for bad in (kafka, topic, user, cassandra):
        assert not jsonschema.Draft202012Validator(schemas[(bad["apiVersion"], bad["kind"])]).is_valid(bad), bad["kind"]


def test_schema_extraction_reads_the_crd_as_the_api_server_does():
    crd = {
        "kind": "CustomResourceDefinition",
        "spec": {"group": "example.com", "names": {"kind": "Thing"}, "versions": [
            {"name": "v1", "served": True, "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "required": ["size"], "properties": {
                    "size": {"type": "integer", "description": "dropped"},
                    "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "raw": {"type": "string", "format": "byte", "x-kubernetes-preserve-unknown-fields": True},
                    "note": {"type": "string", "nullable": True},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "volume": {"type": "object", "properties": {"a": {}, "b": {}},
                               "oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
                }},
                "status": {"type": "object"},
            }}}},
            {"name": "v1alpha1", "served": False, "schema": {"openAPIV3Schema": {"type": "object"}}},
        ]},
    }
    [served] = crd_schema.served_versions(crd)
    schema = crd_schema.convert(crd, served, "test")
    jsonschema.Draft202012Validator.check_schema(schema)
    assert crd_schema.schema_file_name(crd, "v1") == "example.com_thing_v1.json"

    def valid(spec, **extra):
        obj = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": spec, **extra}
        return jsonschema.Draft202012Validator(schema).is_valid(obj)

    assert valid({"size": 1, "config": {"any": {"thing": 1}}, "raw": {"cassandra-yaml": {}}, "note": None,
                  "labels": {"a": "b"}, "volume": {"a": 1}})
    assert not valid({"size": 1, "sise": 2})                  # pruned by the API server, refused by kubectl
    assert not valid({"size": "1"})
    assert not valid({"size": 1, "volume": {"a": 1, "b": 2}})  # oneOf kept as a value check
    assert not valid({"size": 1, "volume": {"c": 1}})
    assert not valid({"size": 1}, status={})                  # status is never written by a manifest
    assert not valid({"size": 1, "labels": {"a": 1}})


# --- the pieces agree -----------------------------------------------------------------------------

def test_every_setting_is_configured_and_every_key_is_a_setting(overlay):
    _, objects = overlay
    given = set(config(objects))
    wanted = {f"LEDGER_{name.upper()}" for name in Settings.model_fields if name not in NOT_IN_CONFIGMAP}
    assert given == wanted, f"missing {sorted(wanted - given)}, not settings {sorted(given - wanted)}"
    settings = Settings(**{k.removeprefix("LEDGER_").lower(): v for k, v in config(objects).items()})
    for workload, template in pod_templates(objects):
        for container in containers(template):
            for env in container.get("env", []):
                if env["name"].startswith("LEDGER_"):
                    setting = env["name"].removeprefix("LEDGER_").lower()
                    assert setting in Settings.model_fields, f"{workload['metadata']['name']}: {env['name']} is not a setting"
                    assert setting in PER_WORKLOAD_SETTINGS, (
                        f"{workload['metadata']['name']}: {env['name']} overrides the ConfigMap; a per-workload "
                        "setting goes in PER_WORKLOAD_SETTINGS with its reason")
    assert settings.environment in yaml.safe_load((REPO_ROOT / "deploy" / "cql" / "environments.yaml").read_text())


def test_addresses_are_the_services_the_operators_and_manifests_create(overlay):
    _, objects = overlay
    settings = Settings(**{k.removeprefix("LEDGER_").lower(): v for k, v in config(objects).items()})
    kafka = find(objects, "Kafka", "ledger")
    assert settings.kafka_bootstrap in {f"{kafka['metadata']['name']}-kafka-bootstrap:{li['port']}"
                                        for li in kafka["spec"]["kafka"]["listeners"]}
    [dc] = find(objects, "CassandraDatacenter")
    assert settings.cassandra_contact_points == [f"{dc['spec']['clusterName']}-{dc['metadata']['name']}-service"]
    assert settings.cassandra_port == 9042
    redis_host = settings.redis_url.split("//", 1)[1].split(":", 1)[0]
    service = find(objects, "Service", redis_host)
    redis = find(objects, "StatefulSet", "ledger-redis")
    assert service["spec"]["selector"].items() <= redis["spec"]["template"]["metadata"]["labels"].items()


def test_the_datacenter_is_the_one_the_keyspace_replicates_to(overlay):
    _, objects = overlay
    environment = config(objects)["LEDGER_ENVIRONMENT"]
    replication = yaml.safe_load((REPO_ROOT / "deploy" / "cql" / "environments.yaml").read_text())[environment]
    options = yaml.safe_load(replication["replication"].replace("'", '"'))
    [dc] = find(objects, "CassandraDatacenter")
    if options["class"] == "NetworkTopologyStrategy":
        assert set(options) - {"class"} == {dc["metadata"]["name"]}
        factor = int(options[dc["metadata"]["name"]])
    else:
        factor = int(options["replication_factor"])
    assert dc["spec"]["size"] >= factor and len(dc["spec"]["racks"]) in (1, factor)
    if environment == "production":
        assert dc["spec"]["size"] == 3


def test_topics_fit_the_brokers_and_the_settings_name_them(overlay):
    _, objects = overlay
    settings = Settings(**{k.removeprefix("LEDGER_").lower(): v for k, v in config(objects).items()})
    kafka = find(objects, "Kafka", "ledger")
    brokers = sum(p["spec"]["replicas"] for p in find(objects, "KafkaNodePool")
                  if p["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"] and "broker" in p["spec"]["roles"])
    kafka_topics = {t["spec"]["topicName"]: t for t in find(objects, "KafkaTopic")}
    for topic in kafka_topics.values():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert topic["spec"]["replicas"] <= brokers
        assert int(topic["spec"]["config"]["min.insync.replicas"]) < topic["spec"]["replicas"] or brokers == 1
    named = {settings.events_topic, settings.ledger_topic, settings.rejections_topic, settings.dlq_topic}
    assert named == set(kafka_topics)
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False


def test_one_kafka_user_per_component_with_acls_on_real_topics_and_groups(overlay):
    _, objects = overlay
    settings = settings_of(objects)
    users = {u["metadata"]["name"]: u for u in find(objects, "KafkaUser")}
    kafka_principals = {p["kafka"] for p in PRINCIPALS.values() if p["kafka"]}
    assert set(users) == kafka_principals, "a KafkaUser no component logs in as, or a login without its KafkaUser"
    kafka_topics = {t["spec"]["topicName"] for t in find(objects, "KafkaTopic")}
    for name, user in users.items():
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}, name
        for acl in user["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            if resource["type"] == "topic" and resource["patternType"] == "literal":
                assert resource["name"] in kafka_topics, (name, resource)
            if resource["type"] == "topic" and resource["patternType"] == "prefix":
                assert any(t.startswith(resource["name"]) for t in kafka_topics), (name, resource)
            if resource["type"] == "group" and resource["patternType"] == "literal":
                assert resource["name"] in bootstrap.worker_groups(settings), (name, resource)
            assert not {"Create", "Alter", "AlterConfigs", "Delete", "All"} & set(acl["operations"]), (
                f"{name}: the Topic Operator owns the topics")


def test_every_kafka_user_may_do_what_its_component_does_and_nothing_else(overlay):
    _, objects = overlay
    settings = settings_of(objects)
    granted = {u["metadata"]["name"]: {(a["resource"]["type"], a["resource"]["name"], a["resource"]["patternType"], op)
                                       for a in u["spec"]["authorization"]["acls"] for op in a["operations"]}
               for u in find(objects, "KafkaUser")}
    for role, wanted in expected_kafka_acls(settings).items():
        user = f"ledger-{role}"
        assert granted[user] == wanted, f"{user}: missing {sorted(wanted - granted[user])}, extra {sorted(granted[user] - wanted)}"
    assert ("topic", settings.events_topic, "literal", "Write") not in granted["ledger-projector"]
    assert not any(op == "Write" for *_, op in granted["ledger-projector"] | granted["ledger-topics-check"])


def test_the_kafka_listener_the_clients_use_has_tls_and_scram(overlay):
    _, objects = overlay
    settings = settings_of(objects)
    kafka = find(objects, "Kafka", "ledger")
    host, _, port = settings.kafka_bootstrap.rpartition(":")
    assert host == f"{kafka['metadata']['name']}-kafka-bootstrap"
    [listener] = [li for li in kafka["spec"]["kafka"]["listeners"] if li["port"] == int(port)]
    assert listener["tls"] is True and listener["authentication"] == {"type": "scram-sha-512"}
    assert settings.kafka_security_protocol == "SASL_SSL" and settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    # no way around the logins: every listener authenticates, and no principal skips the ACLs
    assert all(li["tls"] and li.get("authentication") for li in kafka["spec"]["kafka"]["listeners"])
    assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple"}
    peers = listener["networkPolicyPeers"][0]["podSelector"]["matchExpressions"][0]["values"]
    kafka_components = {t["metadata"]["labels"]["app.kubernetes.io/component"]
                        for w, _, _, t in ledger_workloads(objects) if PRINCIPALS[w["metadata"]["name"]]["kafka"]}
    assert set(peers) == kafka_components


def test_every_kafka_client_logs_in_with_its_own_kafka_user(overlay):
    _, objects = overlay
    settings = settings_of(objects)
    users = {u["metadata"]["name"] for u in find(objects, "KafkaUser")}
    cluster = find(objects, "Kafka", "ledger")["metadata"]["name"]
    assert {w["metadata"]["name"] for w, *_ in ledger_workloads(objects)} == set(PRINCIPALS)
    for workload, env, container, template in ledger_workloads(objects):
        name = workload["metadata"]["name"]
        user = PRINCIPALS[name]["kafka"]
        if user is None:
            assert not {"LEDGER_KAFKA_SASL_USERNAME", "LEDGER_KAFKA_SASL_PASSWORD_FILE"} & set(env), name
            continue
        assert env["LEDGER_KAFKA_SASL_USERNAME"] == {"name": "LEDGER_KAFKA_SASL_USERNAME", "value": user}, name
        assert user in users, f"{name}: no KafkaUser {user} in the render"
        password = env["LEDGER_KAFKA_SASL_PASSWORD_FILE"]["value"]
        assert mounted_file(template, container, password) == ("secret", user, "password"), name   # Strimzi's Secret
        ca = mounted_file(template, container, str(settings.kafka_ssl_ca_file))
        assert ca == ("secret", f"{cluster}-cluster-ca-cert", "ca.crt"), name


def test_no_password_or_secret_value_in_a_config_map_or_an_env_value(overlay):
    _, objects = overlay
    secret_keys = {f"LEDGER_{s.upper()}" for s in (*SECRET_SETTINGS, "api_tokens")}
    assert not secret_keys & set(config(objects))
    for cm in find(objects, "ConfigMap"):
        for key in cm["data"]:
            assert not re.search(r"PASSWORD(?!_FILE)|TOKENS(?!_FILE)|SECRET", key, re.IGNORECASE), (cm["metadata"]["name"], key)
    redis = find(objects, "ConfigMap", "ledger-redis")["data"]
    assert not re.search(r"\s[>#]\S", redis["users.acl"]), "a Redis password (>...) or its hash (#...) in the ConfigMap"
    conf = [line.split()[0] for line in redis["redis.conf"].splitlines() if line.strip()]
    assert not {"requirepass", "masterauth", "user"} & set(conf), "Redis passwords come from ledger-redis-users"
    assert "PASSWORD" not in find(objects, "ConfigMap", "ledger-cassandra-grants")["data"]["9001_grants.cql"].upper()
    [dc] = find(objects, "CassandraDatacenter")
    assert not [k for k in _keys(dc["spec"]["config"]) if "password" in k], "a keystore password in the CassandraDatacenter"
    for workload, template in pod_templates(objects):
        for container in containers(template):
            for env in container.get("env", []):
                if not env["name"].endswith("_FILE") and re.search(r"PASSWORD|TOKEN|SECRET|AUTH", env["name"]):
                    assert "value" not in env, f"{workload['metadata']['name']}: {env['name']} has a value"


def superuser_secret(dc) -> str:
    """cass-operator's Secret of the superuser: generated as <clusterName>-superuser unless one is named."""
    return dc["spec"].get("superuserSecretName") or f"{dc['spec']['clusterName']}-superuser"


def cassandra_grants(objects) -> dict[str, set[str]]:
    """{role: permissions} of the grants file, read as `ledger migrate` reads it."""
    grants = find(objects, "ConfigMap", "ledger-cassandra-grants")["data"]
    [(name, text)] = [(k, v) for k, v in grants.items() if k.endswith(".cql")]
    assert migrations.MIGRATION_FILE.match(name), name
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_text(text)
        statements = migrations.Migration(int(name[:4]), name[5:-4], path).statements(
            {"keyspace": "download_ledger", "replication": "unused"})
    found: dict[str, set[str]] = {}
    for statement in statements:
        m = re.fullmatch(r"GRANT (\w+) ON KEYSPACE download_ledger TO (\w+)", " ".join(statement.split()))
        assert m, f"not a keyspace GRANT: {statement}"
        found.setdefault(m.group(2), set()).add(m.group(1))
    return found


def test_cassandra_keeps_its_memtables_off_the_heap_as_the_local_stack_does(overlay):
    _, objects = overlay
    [dc] = find(objects, "CassandraDatacenter")
    assert dc["spec"]["config"]["cassandra-yaml"]["memtable_allocation_type"] == "offheap_objects"


def test_cassandra_requires_logins_and_tls_and_each_role_has_its_grants(overlay):
    _, objects = overlay
    settings = settings_of(objects)
    [dc] = find(objects, "CassandraDatacenter")
    yaml_config = dc["spec"]["config"]["cassandra-yaml"]
    assert yaml_config["authenticator"] == "PasswordAuthenticator" and yaml_config["authorizer"] == "CassandraAuthorizer"
    encryption = yaml_config["client_encryption_options"]
    assert encryption["enabled"] is True and encryption["optional"] is False
    [tls] = [v for v in dc["spec"]["storageConfig"]["additionalVolumes"] if v["mountPath"] == "/etc/cassandra-tls"]
    assert {encryption["keystore"], encryption["truststore"]} <= {f"{tls['mountPath']}/keystore.pem", f"{tls['mountPath']}/ca.crt"}
    assert settings.cassandra_tls and settings.cassandra_local_dc == dc["metadata"]["name"]
    superuser = superuser_secret(dc)
    logins = {}
    for workload, env, container, template in ledger_workloads(objects):
        name = workload["metadata"]["name"]
        role = PRINCIPALS[name]["cassandra"]
        if role is None:
            assert not {"LEDGER_CASSANDRA_USERNAME", "LEDGER_CASSANDRA_PASSWORD_FILE"} & set(env), name
            continue
        _, secret, key = mounted_file(template, container, env["LEDGER_CASSANDRA_PASSWORD_FILE"]["value"])
        assert key == "password", name
        if role == "superuser":
            assert secret == superuser and env["LEDGER_CASSANDRA_USERNAME"]["valueFrom"] == {
                "secretKeyRef": {"name": superuser, "key": "username"}}, name
        else:
            logins[env["LEDGER_CASSANDRA_USERNAME"]["value"]] = secret
            assert env["LEDGER_CASSANDRA_USERNAME"]["value"] == role, name
        ca = mounted_file(template, container, str(settings.cassandra_ssl_ca_file))
        assert ca[1:] == ("ledger-cassandra-tls", "ca.crt") and ca[1] == tls["volumeSource"]["secret"]["secretName"], name
    # cass-operator creates exactly the roles the components log in as; the grants cover each
    assert sorted((u["secretName"], u["superuser"]) for u in dc["spec"]["users"]) == sorted((s, False) for s in logins.values())
    grants = cassandra_grants(objects)
    assert set(grants) == set(logins)
    assert grants["ledger_decider"] == grants["ledger_projector"] == {"SELECT", "MODIFY"}
    assert grants["ledger_api"] == {"SELECT"}
    assert not {"DROP", "ALTER", "AUTHORIZE", "ALL"} & grants["ledger_tools"]


def test_each_workloads_settings_make_the_clients_it_needs(overlay, tmp_path):
    """The ConfigMap and the container's env, read by Settings as the container will (each password
    file given a stand-in), then turned into the clients' options by the application's own code."""
    from app.adapters.cassandra import session as cassandra_session

    _, objects = overlay
    for workload, env, _container, _template in ledger_workloads(objects):
        name = workload["metadata"]["name"]
        values = dict(config(objects))
        for key, e in env.items():
            values[key] = e["value"] if "value" in e else f"{name}-from-{next(iter(e['valueFrom']))}"
        for key in [k for k in values if k.endswith("_PASSWORD_FILE")]:
            stand_in = tmp_path / f"{name}-{key}"
            stand_in.write_text(f"secret-of-{name}\n")
            values[key] = str(stand_in)
        settings = Settings(**{k.removeprefix("LEDGER_").lower(): v for k, v in values.items()})
        principals = PRINCIPALS[name]
        if principals["kafka"]:
            options = bootstrap.kafka_connection(settings).librdkafka()
            assert options["security.protocol"] == "SASL_SSL" and options["sasl.mechanism"] == "SCRAM-SHA-512"
            assert (options["sasl.username"], options["sasl.password"]) == (principals["kafka"], f"secret-of-{name}")
            assert options["ssl.ca.location"] == config(objects)["LEDGER_KAFKA_SSL_CA_FILE"]
        if principals["cassandra"]:
            login = cassandra_session.auth_provider(settings)
            assert login is not None and login.password == f"secret-of-{name}", name
            assert settings.cassandra_tls and settings.cassandra_local_dc, name
        if principals["redis"]:
            options = bootstrap.redis_security(settings)
            assert options["username"] == principals["redis"] and options["password"] == f"secret-of-{name}"
            assert options["ssl_ca_certs"] == config(objects)["LEDGER_REDIS_SSL_CA_FILE"]
            assert settings.redis_tls and settings.redis_cluster_nodes == [("ledger-redis", 6379)]


def test_the_migrate_job_applies_the_schema_then_the_grants(overlay):
    _, objects = overlay
    job = find(objects, "Job", "ledger-migrate")["spec"]["template"]
    [schema] = job["spec"]["initContainers"]
    [grants] = job["spec"]["containers"]
    assert schema["args"] == ["migrate"]
    assert grants["args"][:2] == ["migrate", "--dir"]
    assert mounted_file(job, grants, f"{grants['args'][2]}/environments.yaml")[:2] == ("configMap", "ledger-cassandra-grants")
    data = find(objects, "ConfigMap", "ledger-cassandra-grants")["data"]
    environments = yaml.safe_load((REPO_ROOT / "deploy" / "cql" / "environments.yaml").read_text())
    assert set(yaml.safe_load(data["environments.yaml"])) == set(environments)
    [name] = [k for k in data if k.endswith(".cql")]
    schema_versions = {m.version for m in migrations.discover(REPO_ROOT / "deploy" / "cql")}
    assert int(name[:4]) > max(schema_versions) + 1000, "the grants share schema_migrations with deploy/cql/"


def redis_users(objects) -> dict[str, list[str]]:
    acl = find(objects, "ConfigMap", "ledger-redis")["data"]["users.acl"]
    users = {}
    for line in acl.splitlines():
        keyword, name, *rules = line.split()
        assert keyword == "user", line
        users[name] = rules
    return users


REDIS_READ_COMMANDS = {"get", "hget", "mget", "scard", "sscan", "scan", "exists"}
REDIS_CLIENT_COMMANDS = {"cluster|slots", "command", "asking", "ping"}


def test_redis_speaks_tls_only_and_every_client_has_its_own_user(overlay):
    _, objects = overlay
    settings = settings_of(objects)
    data = find(objects, "ConfigMap", "ledger-redis")["data"]
    conf = dict(line.split(None, 1) for line in data["redis.conf"].splitlines() if line.strip())
    assert conf["port"] == "0" and conf["tls-port"] == "6379"
    assert conf["tls-replication"] == "yes" and conf["tls-cluster"] == "yes"
    assert conf["cluster-preferred-endpoint-type"] == "hostname", "clients check the nodes' names, not their IPs"
    assert "user" not in conf and conf["aclfile"].startswith("/run/redis/")
    assert settings.redis_url.startswith("rediss://") and settings.redis_tls
    users = redis_users(objects)
    assert users["default"][0] == "off" and "user default off" in data["users.acl"]
    assert [r for r in users["probe"] if r.startswith("+")] == ["+ping"]
    clients = {}
    for workload, env, container, template in ledger_workloads(objects):
        name = workload["metadata"]["name"]
        user = PRINCIPALS[name]["redis"]
        if user is None:
            assert not {"LEDGER_REDIS_USERNAME", "LEDGER_REDIS_PASSWORD_FILE"} & set(env), name
            continue
        assert env["LEDGER_REDIS_USERNAME"]["value"] == user and user in users, name
        assert mounted_file(template, container, env["LEDGER_REDIS_PASSWORD_FILE"]["value"]) == (
            "secret", "ledger-redis-users", user), name
        assert mounted_file(template, container, str(settings.redis_ssl_ca_file)) == ("secret", "ledger-redis-tls", "ca.crt")
        clients[user] = users[user]
    for user, rules in clients.items():
        assert "-@all" in rules and rules.index("-@all") < min(i for i, r in enumerate(rules) if r.startswith("+")), user
        keys = [r for r in rules if "~" in r]
        assert keys == (["%R~ledger:*"] if user == "ledger-api" else ["~ledger:*"]), user
        assert REDIS_CLIENT_COMMANDS <= {r[1:] for r in rules if r.startswith("+")}, user
    api = {r[1:] for r in clients["ledger-api"] if r.startswith("+")} - REDIS_CLIENT_COMMANDS
    assert api <= REDIS_READ_COMMANDS, f"the API is read-only: {sorted(api - REDIS_READ_COMMANDS)}"
    # the server hashes every user's password from the one Secret; the pods that run it see it all
    redis = find(objects, "StatefulSet", "ledger-redis")["spec"]["template"]
    [server] = redis["spec"]["containers"]
    assert mounted_file(redis, server, "/etc/redis-passwords/ledger-replication") == (
        "secret", "ledger-redis-users", "ledger-replication")
    assert conf["masteruser"] in users
    for probe in ("readinessProbe", "livenessProbe"):
        script = server[probe]["exec"]["command"][-1]
        assert "--user probe" in data[script.rpartition("/")[2]] and "--tls" in data[script.rpartition("/")[2]]


def test_workers_are_statefulsets_with_static_member_ids_probes_and_budgets(overlay):
    _, objects = overlay
    settings = Settings(**{k.removeprefix("LEDGER_").lower(): v for k, v in config(objects).items()})
    for role in WORKER_ROLES:
        sts = find(objects, "StatefulSet", f"ledger-{role}")
        pod = sts["spec"]["template"]
        [container] = pod["spec"]["containers"]
        assert container["args"][:3] == ["worker", "--role", role]
        env = {e["name"]: e for e in container["env"]}
        assert env["LEDGER_CONSUMER_GROUP_INSTANCE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == settings.metrics_port == 9464
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path and ports.get(get["port"], get["port"]) == 9464, (role, probe)
        assert pod["spec"]["terminationGracePeriodSeconds"] > settings.stop_timeout_s
        service = find(objects, "Service", sts["spec"]["serviceName"])
        assert service["spec"]["clusterIP"] == "None"
        budgets = [b for b in find(objects, "PodDisruptionBudget")
                   if b["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()]
        assert len(budgets) == 1 and budgets[0]["spec"]["maxUnavailable"] == 1, role
        partitions = next(t["spec"]["partitions"] for t in find(objects, "KafkaTopic")
                          if t["spec"]["topicName"] == (settings.events_topic if role == "decider" else settings.ledger_topic))
        assert 1 <= sts["spec"]["replicas"] <= partitions, f"{role}: pods beyond the partitions would sit idle"


def test_the_api_is_a_scaled_deployment_behind_a_service_with_its_tokens_from_a_secret(overlay):
    _, objects = overlay
    settings = Settings(**{k.removeprefix("LEDGER_").lower(): v for k, v in config(objects).items()})
    assert settings.api_host == "0.0.0.0"
    deployment = find(objects, "Deployment", "ledger-api")
    pod = deployment["spec"]["template"]
    [container] = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == settings.api_port
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    tokens_file = Path({e["name"]: e for e in container["env"]}["LEDGER_API_TOKENS_FILE"]["value"])
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == str(tokens_file.parent)]
    [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"] == {"secretName": "ledger-api-tokens", "items": [{"key": "tokens", "path": tokens_file.name}]}
    hpa = find(objects, "HorizontalPodAutoscaler", "ledger-api")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ledger-api"}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    service = find(objects, "Service", "ledger-api")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)


def test_secrets_are_referenced_never_inlined(overlay):
    _, objects = overlay
    assert not [o for o in objects if o["kind"] == "Secret"], "a Secret with its values does not belong in git"
    readme = (K8S / "README.md").read_text()
    for _workload, template in pod_templates(objects):
        for container in containers(template):
            for env in container.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    assert f"`{ref['name']}`" in readme, f"secret {ref['name']} is not documented in deploy/k8s/README.md"
                assert not (env["name"] == "LEDGER_API_TOKENS" and "value" in env)
    [dc] = find(objects, "CassandraDatacenter")
    secret_volumes = [v["secret"]["secretName"] for _, t in pod_templates(objects) for v in t["spec"].get("volumes", [])
                      if "secret" in v]
    secret_volumes += [v["volumeSource"]["secret"]["secretName"] for v in dc["spec"]["storageConfig"]["additionalVolumes"]
                       if "secret" in v["volumeSource"]]
    for name in {*secret_volumes, superuser_secret(dc), *(u["secretName"] for u in dc["spec"]["users"])}:
        assert f"`{name}`" in readme, f"secret {name} is not documented in deploy/k8s/README.md"
    assert "LEDGER_API_TOKENS" not in config(objects)


def test_every_container_requests_resources_and_has_a_memory_limit(overlay):
    _, objects = overlay
    for workload, template in pod_templates(objects):
        for container in containers(template):
            resources = container.get("resources") or {}
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), (workload["metadata"]["name"], container["name"])
            assert "memory" in resources.get("limits", {}), (workload["metadata"]["name"], container["name"])
    for pool in find(objects, "KafkaNodePool"):
        assert {"cpu", "memory"} <= set(pool["spec"]["resources"]["requests"])
    for dc in find(objects, "CassandraDatacenter"):
        assert {"cpu", "memory"} <= set(dc["spec"]["resources"]["requests"])


def test_redis_is_a_cluster_of_three_masters_with_one_replica_each(overlay):
    _, objects = overlay
    redis = find(objects, "StatefulSet", "ledger-redis")
    assert redis["spec"]["replicas"] == 6
    scripts = find(objects, "ConfigMap", "ledger-redis")["data"]
    assert "cluster-enabled yes" in scripts["redis.conf"] and "maxmemory-policy noeviction" in scripts["redis.conf"]
    assert "--cluster-replicas 1" in scripts["create-cluster.sh"] and "for i in 0 1 2 3 4 5;" in scripts["create-cluster.sh"]
    [container] = redis["spec"]["template"]["spec"]["containers"]
    maxmemory = {e["name"]: e.get("value") for e in container["env"]}["REDIS_MAXMEMORY"]
    assert _bytes(maxmemory) <= 0.8 * _bytes(container["resources"]["limits"]["memory"]), "leave room for the AOF rewrite"
    job = find(objects, "Job", "ledger-redis-cluster-create")
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    assert not redis["spec"]["selector"]["matchLabels"].items() <= job_labels.items()


def test_prometheus_scrapes_the_ledger_pods_of_the_overlay_namespace(overlay):
    _, objects = overlay
    namespace = find(objects, "Namespace")[0]["metadata"]["name"]
    scrape = yaml.safe_load(find(objects, "ConfigMap", "ledger-prometheus")["data"]["ledger.yml"])
    [job] = scrape["scrape_configs"]
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == [namespace]
    port_rule = next(r for r in job["relabel_configs"] if r["source_labels"] == ["__meta_kubernetes_pod_container_port_name"])
    assert set(port_rule["regex"].split("|")) == {"metrics", "http"}
    assert all(o["metadata"].get("namespace") == namespace for o in objects if o["kind"] != "Namespace")


def test_selectors_select_their_own_pods(overlay):
    _, objects = overlay
    for workload, template in pod_templates(objects):
        selector = (workload["spec"].get("selector") or {}).get("matchLabels")
        if selector:
            assert selector.items() <= template["metadata"]["labels"].items(), workload["metadata"]["name"]
    labels = [t["metadata"]["labels"] for w, t in pod_templates(objects) if w["kind"] != "Job"]
    for service in find(objects, "Service"):
        assert any(service["spec"]["selector"].items() <= pod.items() for pod in labels), service["metadata"]["name"]


def _keys(node) -> list[str]:
    """Every mapping key anywhere in ``node``."""
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in (key, *_keys(value))]
    if isinstance(node, list):
        return [k for item in node for k in _keys(item)]
    return []


def _bytes(quantity: str) -> float:
    """A Kubernetes quantity (Mi, Gi) or a Redis memory size (mb, gb): bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "kb": 2**10, "mb": 2**20, "gb": 2**30}
    for unit in sorted(units, key=len, reverse=True):
        if quantity.endswith(unit):
            return float(quantity[: -len(unit)]) * units[unit]
    return float(quantity)
