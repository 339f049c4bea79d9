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
import shutil
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from app.config import REPO_ROOT, Settings
from tools.k8s import crd_schema, topics
from tools.k8s.kustomize import identity, render

K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = {"production": K8S / "overlays" / "production"}
# Strimzi 1.2 supports Kubernetes 1.30 and newer; 1.37 is the newest kubernetes-validate 1.37.0 knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
WORKER_ROLES = ("decider", "projector")
# Settings the manifests do not give through the ConfigMap, and where each comes from instead.
NOT_IN_CONFIGMAP = {
    "api_tokens": "the Secret ledger-api-tokens, API container only",
    "api_tokens_file": "unused: the tokens come from the Secret as LEDGER_API_TOKENS",
    "api_metrics_port": "unset: the API's /metrics stays on its http port, where Prometheus scrapes it",
    "stack_dir": "the local stack only",
    "count_statements_to": "the bench only: counts a worker's Cassandra statements",
    "consumer_group_instance_id": "per pod: the worker StatefulSets pass the pod name (once Settings has it)",
}
PER_POD_SETTINGS = {"LEDGER_CONSUMER_GROUP_INSTANCE_ID"}  # read once the cluster work lands (static membership)


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
        for container in template["spec"]["containers"]:
            for env in container.get("env", []):
                if env["name"].startswith("LEDGER_"):
                    setting = env["name"].removeprefix("LEDGER_").lower()
                    assert setting in Settings.model_fields or env["name"] in PER_POD_SETTINGS, (
                        f"{workload['metadata']['name']}: {env['name']} is not a setting")
    assert settings.environment in yaml.safe_load((REPO_ROOT / "deploy" / "cql" / "environments.yaml").read_text())


def test_addresses_are_the_services_the_operators_and_manifests_create(overlay):
    _, objects = overlay
    settings = Settings(**{k.removeprefix("LEDGER_").lower(): v for k, v in config(objects).items()})
    kafka = find(objects, "Kafka", "ledger")
    plain = [li for li in kafka["spec"]["kafka"]["listeners"] if not li["tls"] and "authentication" not in li]
    assert [f"{kafka['metadata']['name']}-kafka-bootstrap:{li['port']}" for li in plain] == [settings.kafka_bootstrap]
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


def test_one_kafka_user_per_role_with_acls_on_real_topics_and_groups(overlay):
    _, objects = overlay
    settings = Settings(**{k.removeprefix("LEDGER_").lower(): v for k, v in config(objects).items()})
    users = {u["metadata"]["name"]: u for u in find(objects, "KafkaUser")}
    assert set(users) == {"ledger-decider", "ledger-projector", "ledger-tools"}   # the API reads Redis only
    kafka_topics = {t["spec"]["topicName"] for t in find(objects, "KafkaTopic")}
    for name, user in users.items():
        for acl in user["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            if resource["type"] == "topic" and resource["patternType"] == "literal":
                assert resource["name"] in kafka_topics, (name, resource)
            if resource["type"] == "topic" and resource["patternType"] == "prefix":
                assert any(t.startswith(resource["name"]) for t in kafka_topics), (name, resource)
            if resource["type"] == "group":
                role = name.removeprefix("ledger-")
                assert resource["name"] == f"{settings.consumer_group}-{role}", (name, resource)
            assert not {"Create", "Alter", "AlterConfigs", "Delete", "All"} & set(acl["operations"]), (
                f"{name}: the Topic Operator owns the topics")
    reads = {n: {a["resource"]["name"] for a in u["spec"]["authorization"]["acls"] if "Read" in a["operations"]}
             for n, u in users.items()}
    assert settings.events_topic in reads["ledger-decider"] and settings.ledger_topic in reads["ledger-projector"]


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
    tokens = {e["name"]: e for e in container["env"]}["LEDGER_API_TOKENS"]
    assert "value" not in tokens and tokens["valueFrom"]["secretKeyRef"] == {"name": "ledger-api-tokens", "key": "tokens"}
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
        for container in template["spec"]["containers"]:
            for env in container.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    assert f"`{ref['name']}`" in readme, f"secret {ref['name']} is not documented in deploy/k8s/README.md"
                assert not (env["name"] == "LEDGER_API_TOKENS" and "value" in env)
    assert "LEDGER_API_TOKENS" not in config(objects)


def test_every_container_requests_resources_and_has_a_memory_limit(overlay):
    _, objects = overlay
    for workload, template in pod_templates(objects):
        for container in template["spec"]["containers"]:
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


def _bytes(quantity: str) -> float:
    """A Kubernetes quantity (Mi, Gi) or a Redis memory size (mb, gb): bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "kb": 2**10, "mb": 2**20, "gb": 2**30}
    for unit in sorted(units, key=len, reverse=True):
        if quantity.endswith(unit):
            return float(quantity[: -len(unit)]) * units[unit]
    return float(quantity)
