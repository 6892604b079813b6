"""The Kubernetes manifests (deploy/k8s): each overlay rendered with kustomize, every object
validated offline — core kinds against Kubernetes' own schemas (kubernetes-validate, strict),
the operators' kinds against the vendored CRDs (deploy/k8s/schemas, pinned by SHA256SUMS) with
unknown fields refused, as the API server's strict field validation does — and held to what
the service does: probe paths it serves, topics it uses with the partitions it is configured
for, the rules and dashboards it generates, Services and monitors that select its pods."""

from __future__ import annotations

import ast
import copy
import functools
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from cs_pulse import topics
from cs_pulse.metrics import dashboards, k8s, rules
from cs_pulse.metrics.http import metrics_app
from cs_pulse.settings import Settings
from cs_pulse.sources.webhooks.receiver import DRAIN_SECONDS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"
OVERLAYS = ("dev", "prod")
KUBERNETES = "1.33.0"          # the core schemas (kubernetes-validate bundles every release)
FAUST_LEADER_TOPIC = "{app_id}-__assignor-__leader"   # faust/assignor/leader_assignor.py
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

Obj = dict[str, Any]


# --- rendering ------------------------------------------------------------------------------

def kustomize() -> list[str]:
    """The pinned kustomize ./dev installs into the venv (go install), else kubectl's."""
    pinned = Path(sys.executable).parent / "kustomize"
    if pinned.exists():
        return [str(pinned), "build"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    pytest.fail("no kustomize: ./dev setup installs it (go install sigs.k8s.io/kustomize/...)")


@functools.cache
def rendered(overlay: str) -> tuple[Obj, ...]:
    out = subprocess.run([*kustomize(), str(K8S / "overlays" / overlay)], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def of_kind(objects: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: tuple[Obj, ...], kind: str, name: str) -> Obj:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


def config(objects: tuple[Obj, ...]) -> dict[str, str]:
    """The data of the cs-pulse-config ConfigMap (its generated name carries a hash)."""
    maps = [o for o in of_kind(objects, "ConfigMap")
            if o["metadata"]["name"].startswith("cs-pulse-config-")]
    assert len(maps) == 1
    data: dict[str, str] = maps[0]["data"]
    return data


def field(key: str) -> str:
    return key.removeprefix("CS_PULSE_").lower()


def is_file_setting(key: str) -> bool:
    """CA, certificate, key and password files: mounted from Secrets (checked below)."""
    return field(key).startswith("kafka_") and field(key).endswith("file")


def settings_of(objects: tuple[Obj, ...]) -> Settings:
    """The ConfigMap read as the worker reads its environment: an unknown CS_PULSE_* key, a bad
    value or a combination the service refuses fails here (extra="forbid"). The files it names
    exist in the pods only: a stand-in file is read here instead."""
    stand_in = Path(tempfile.gettempdir()) / "cs-pulse-k8s-test-file"
    stand_in.write_text("stand-in\n")
    return Settings(**{field(key): str(stand_in) if is_file_setting(key) else value
                       for key, value in config(objects).items()})


def workloads(objects: tuple[Obj, ...]) -> list[Obj]:
    """The Deployments (workers) and StatefulSets (webhook receivers, their spools)."""
    return [*of_kind(objects, "Deployment"), *of_kind(objects, "StatefulSet")]


def containers(objects: tuple[Obj, ...]) -> Iterator[tuple[Obj, Obj]]:
    for deployment in workloads(objects):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield deployment, container


# --- schemas --------------------------------------------------------------------------------

def test_the_vendored_crds_are_the_pinned_releases() -> None:
    """deploy/k8s/schemas/fetch.sh wrote them from pinned releases; nobody edited them since."""
    sums = [line.split() for line in (SCHEMAS / "SHA256SUMS").read_text().splitlines()]
    assert {Path(name).name for _, name in sums} == {p.name for p in SCHEMAS.glob("*.yaml")}
    for digest, name in sums:
        assert hashlib.sha256((SCHEMAS / name).read_bytes()).hexdigest() == digest, name


def _strict(schema: Any) -> Any:
    """A CRD's structural schema with unknown fields refused (the API server prunes them
    silently; kubectl's default strict field validation refuses them)."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) if k != "default" and k != "example" else v
                  for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    return schema


@functools.cache
def crd_schemas() -> dict[tuple[str, str], Obj]:
    """(apiVersion, kind) -> the served version's openAPIV3Schema, made strict."""
    out = {}
    for path in SCHEMAS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        assert crd["kind"] == "CustomResourceDefinition", path
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version["served"]:
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                schema["properties"]["metadata"] = {"type": "object"}   # checked below
                out[(f"{group}/{version['name']}", kind)] = _strict(schema)
    return out


def _metadata_errors(obj: Obj) -> list[str]:
    meta = obj["metadata"]
    errors = [] if DNS_SUBDOMAIN.match(meta.get("name", "")) else ["metadata.name"]
    for field in ("labels", "annotations"):
        errors += [f"metadata.{field}.{k}" for k, v in (meta.get(field) or {}).items()
                   if not isinstance(v, str)]
    return errors


def test_every_object_validates_against_its_schema(overlay: str) -> None:
    objects = rendered(overlay)
    crds = crd_schemas()
    kinds = set()
    for obj in objects:
        where = f"{overlay}: {obj['kind']}/{obj['metadata'].get('name')}"
        assert not _metadata_errors(obj), (where, _metadata_errors(obj))
        key = (obj["apiVersion"], obj["kind"])
        kinds.add(obj["kind"])
        if key in crds:
            errors = sorted(jsonschema.Draft7Validator(crds[key]).iter_errors(obj),
                            key=lambda e: list(e.absolute_path))
            assert not errors, f"{where}: " + "; ".join(
                f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])
        else:
            try:
                kubernetes_validate.validate(obj, KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where}: {exc.message} at {'.'.join(map(str, exc.path))}")
    assert {"Deployment", "Service", "ConfigMap", "PodMonitor", "PrometheusRule", "Kafka",
            "KafkaNodePool", "KafkaTopic"} <= kinds


def test_a_wrong_field_is_refused() -> None:
    """The validation catches what a cluster would refuse: a misspelt field in a CRD object,
    a wrong type in a core one."""
    objects = rendered("dev")
    topic = copy.deepcopy(of_kind(objects, "KafkaTopic")[0])
    topic["spec"]["partition"] = topic["spec"].pop("partitions")
    schema = crd_schemas()[(topic["apiVersion"], "KafkaTopic")]
    assert not jsonschema.Draft7Validator(schema).is_valid(topic)
    deployment = copy.deepcopy(one(objects, "Deployment", "cs-pulse-worker"))
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


# --- the service ----------------------------------------------------------------------------

def _extra_get_paths(module: Path) -> set[str]:
    """The keys of ``get={...}`` in the module's ``metrics_app(...)`` calls."""
    paths = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "metrics_app":
            for kw in node.keywords:
                if kw.arg == "get" and isinstance(kw.value, ast.Dict):
                    paths |= {k.value for k in kw.value.keys if isinstance(k, ast.Constant)}
    return paths


def served_get_paths() -> dict[str, set[str]]:
    """Component -> the GET paths its one HTTP server (metrics/http.py) answers."""
    app = metrics_app(CollectorRegistry())
    common = {r.get_info().get("path", "") for r in app.router.resources()}
    package = ROOT / "service" / "cs_pulse"
    return {"worker": common | _extra_get_paths(package / "worker" / "app.py"),
            "webhook": common | _extra_get_paths(package / "sources" / "webhooks" /
                                                 "receiver.py")}


def test_probes_hit_paths_the_service_serves_on_its_port(overlay: str) -> None:
    objects = rendered(overlay)
    served = served_get_paths()
    assert "/ready" in served["worker"] and "/healthz" in served["webhook"]
    settings = settings_of(objects)
    ports = {"worker": settings.metrics_port, "webhook": settings.webhook_port}
    for deployment, container in containers(objects):
        component = deployment["spec"]["template"]["metadata"]["labels"][
            "app.kubernetes.io/component"]
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert set(named.values()) == {ports[component]}, deployment["metadata"]["name"]
        probes = {k: container.get(k) for k in ("readinessProbe", "livenessProbe")}
        assert all(probes.values()), f"{component}: readiness and liveness probes"
        for kind, probe in {**probes, "startupProbe": container.get("startupProbe")}.items():
            if probe:
                get = probe["httpGet"]
                assert get["path"] in served[component], (component, kind, get["path"])
                assert named.get(get["port"], get["port"]) == ports[component], (component, kind)
    worker = one(objects, "Deployment", "cs-pulse-worker")["spec"]["template"]["spec"]
    probes = worker["containers"][0]
    assert probes["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_pods_run_as_non_root_on_a_read_only_root_with_their_data_where_it_belongs(
        overlay: str) -> None:
    objects = rendered(overlay)
    data_dir = settings_of(objects).data_dir
    for deployment, container in containers(objects):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"] and container["resources"]["limits"]
        empty = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        assert mounts.get("/tmp") in empty
        if container["args"] == ["worker"]:
            assert mounts.get(data_dir) in empty, "CS_PULSE_DATA_DIR on an emptyDir"
            # the worker flushes on SIGTERM: more than Kubernetes' default 30 s to do it in
            assert pod["terminationGracePeriodSeconds"] >= 30
        if container["args"] == ["webhook"]:
            # What a receiver acknowledged outlives its pod: the spool on its own claim.
            assert deployment["kind"] == "StatefulSet"
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            claims = {c["metadata"]["name"] for c in deployment["spec"]["volumeClaimTemplates"]}
            assert mounts.get(env["CS_PULSE_WEBHOOK_SPOOL_DIR"]) in claims
            claim = deployment["spec"]["volumeClaimTemplates"][0]["spec"]
            size = int(claim["resources"]["requests"]["storage"].removesuffix("Gi")) << 30
            assert int(env["CS_PULSE_WEBHOOK_SPOOL_MAX_BYTES"]) < size
            # the receiver forwards its spool for 20 s on SIGTERM (receiver.DRAIN_SECONDS)
            assert pod["terminationGracePeriodSeconds"] > DRAIN_SECONDS


def test_env_comes_from_the_configmap_and_the_optional_kafka_secret(overlay: str) -> None:
    objects = rendered(overlay)
    config_name = next(o["metadata"]["name"] for o in of_kind(objects, "ConfigMap")
                       if o["metadata"]["name"].startswith("cs-pulse-config-"))
    example = {d["metadata"]["name"]: set(d["stringData"]) for d in yaml.safe_load_all(
        (K8S / "base" / "secret.example.yaml").read_text())}
    kafka_keys = set(example["cs-pulse-kafka"])
    assert kafka_keys and all(k.upper().removeprefix("CS_PULSE_").lower() in Settings.model_fields
                              for k in kafka_keys), "the example names real settings"
    for deployment, container in containers(objects):
        sources = container["envFrom"]
        assert {"configMapRef": {"name": config_name}} in sources
        assert {"secretRef": {"name": "cs-pulse-kafka", "optional": True}} in sources
        for env in container.get("env", []):   # a required Secret key must be in the example
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref and not ref.get("optional"):
                assert ref["key"] in example[ref["name"]], (deployment["metadata"]["name"], ref)


def test_files_the_settings_name_are_mounted_from_secrets(overlay: str) -> None:
    objects = rendered(overlay)
    files = {key: PurePosixPath(value) for key, value in config(objects).items()
             if is_file_setting(key)}
    for deployment, container in containers(objects):
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        volumes |= {c["metadata"]["name"]: {"persistentVolumeClaim": c}
                    for c in deployment["spec"].get("volumeClaimTemplates", [])}
        mounts = {PurePosixPath(m["mountPath"]): volumes[m["name"]]
                  for m in container.get("volumeMounts", [])}
        for key, path in files.items():
            secret = mounts.get(path.parent, {}).get("secret")
            assert secret, f"{deployment['metadata']['name']}: {key}={path} not from a Secret"
            items = secret.get("items")
            assert items is None or path.name in {i["path"] for i in items}, (key, path)


def _acl_allows(acls: list[Obj], kind: str, name: str) -> bool:
    return any(a.get("type", "allow") == "allow" and a["resource"]["type"] == kind
               and (name.startswith(a["resource"]["name"])
                    if a["resource"].get("patternType") == "prefix"
                    else name == a["resource"]["name"])
               and {"All"} & set(a["operations"]) for a in acls)


def test_clients_connect_to_a_listener_they_can_authenticate_on(overlay: str) -> None:
    """CS_PULSE_BROKER names a listener of the Strimzi Kafka whose TLS and authentication are
    the clients' CS_PULSE_KAFKA_* settings; with SASL, the KafkaUser exists, its Secret and
    the cluster CA are what the pods mount, and its ACLs cover every topic and the group."""
    objects = rendered(overlay)
    settings = settings_of(objects)
    kafka = one(objects, "Kafka", "cs-pulse")
    port = int(settings.bootstrap.rsplit(":", 1)[1])
    (listener,) = [x for x in kafka["spec"]["kafka"]["listeners"] if x["port"] == port]
    protocol = settings.kafka_security_protocol
    assert listener["tls"] == protocol.endswith("SSL")
    auth = listener.get("authentication", {}).get("type")
    if not protocol.startswith("SASL_"):
        assert auth is None
        return
    mechanism = settings.kafka_sasl_mechanism.lower()
    assert auth == mechanism
    user = one(objects, "KafkaUser", settings.kafka_sasl_username)
    assert user["spec"]["authentication"]["type"] == mechanism
    assert user["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    for workload in workloads(objects):   # every Kafka client: workers and receivers
        secrets = {v["secret"]["secretName"]
                   for v in workload["spec"]["template"]["spec"]["volumes"] if "secret" in v}
        assert {user["metadata"]["name"],
                f"{kafka['metadata']['name']}-cluster-ca-cert"} <= secrets, workload["kind"]
    if "authorization" in kafka["spec"]["kafka"]:
        acls = user["spec"]["authorization"]["acls"]
        for topic in of_kind(objects, "KafkaTopic"):
            assert _acl_allows(acls, "topic", topic["spec"]["topicName"]), topic
        assert _acl_allows(acls, "group", settings.app_id)


def test_topics_are_those_the_worker_uses_with_its_partitions(overlay: str) -> None:
    objects = rendered(overlay)
    settings = settings_of(objects)
    kafka = of_kind(objects, "Kafka")
    assert len(kafka) == 1
    cluster = kafka[0]["metadata"]["name"]
    assert settings.bootstrap.split(":")[0] == f"{cluster}-kafka-bootstrap"
    declared = {t["spec"]["topicName"]: t for t in of_kind(objects, "KafkaTopic")}
    leader = FAUST_LEADER_TOPIC.format(app_id=settings.app_id)
    assert set(declared) == {*topics.worker_topics(settings), leader}
    for name, topic in declared.items():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == cluster, name
        wanted = 1 if name == leader else settings.partitions
        assert topic["spec"]["partitions"] == wanted, f"{overlay}: {name}"
        compact = name.endswith("-changelog")
        assert (topic["spec"]["config"]["cleanup.policy"] == "compact") == compact, name
        if compact:   # as the worker creates them
            config = {k: str(v) for k, v in topic["spec"]["config"].items()}
            assert config.items() >= topics.CHANGELOG_CONFIGS.items(), name
    brokers = sum(p["spec"]["replicas"] for p in of_kind(objects, "KafkaNodePool")
                  if "broker" in p["spec"]["roles"])
    assert all(t["spec"]["replicas"] <= brokers for t in declared.values())
    worker = one(objects, "Deployment", "cs-pulse-worker")["spec"]
    surge = worker["strategy"]["rollingUpdate"]["maxSurge"]
    # workers beyond the partition count sit idle and never turn ready: a rolling update
    # (maxUnavailable 0) would wait for them forever
    assert worker["replicas"] + surge <= settings.partitions


def test_the_prometheus_rule_is_the_generated_rules(overlay: str) -> None:
    objects = rendered(overlay)
    (rule,) = of_kind(objects, "PrometheusRule")
    groups = [g for path in (rules.RECORDING_FILE, rules.ALERTS_FILE)
              for g in yaml.safe_load((ROOT / path).read_text())["groups"]]
    assert rule["spec"]["groups"] == groups
    assert (ROOT / k8s.PROMETHEUS_RULE_FILE).read_text() == k8s.render({})[
        k8s.PROMETHEUS_RULE_FILE], "run python -m cs_pulse.metrics.generate"


def test_every_dashboard_is_a_configmap_for_the_grafana_sidecar(overlay: str) -> None:
    objects = rendered(overlay)
    boards = {p.name: p.read_text() for p in (ROOT / dashboards.OUT_DIR).glob("*.json")}
    maps = {o["metadata"]["name"]: o for o in of_kind(objects, "ConfigMap")
            if o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"}
    assert set(maps) == {k8s.dashboard_configmap_name(name) for name in boards}
    for name, text in boards.items():
        data = maps[k8s.dashboard_configmap_name(name)]["data"]
        assert data == {name: text}
        json.loads(data[name])


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_services_monitors_and_budgets_select_existing_pods(overlay: str) -> None:
    objects = rendered(overlay)
    pods = [(d["spec"]["template"]["metadata"]["labels"],
             {p["name"] for c in d["spec"]["template"]["spec"]["containers"]
              for p in c.get("ports", [])}) for d in workloads(objects)]
    for d in workloads(objects):
        assert _selects(d["spec"]["selector"]["matchLabels"],
                        d["spec"]["template"]["metadata"]["labels"])
    components = set()
    for service in of_kind(objects, "Service"):
        matched = [ports for labels, ports in pods if _selects(service["spec"]["selector"],
                                                                labels)]
        assert len(matched) == 1, service["metadata"]["name"]
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= matched[0]
        components.add(service["spec"]["selector"]["app.kubernetes.io/component"])
    assert components == {"worker", "webhook"}, "a Service per component"
    for monitor in of_kind(objects, "PodMonitor"):
        matched = [ports for labels, ports in pods
                   if _selects(monitor["spec"]["selector"]["matchLabels"], labels)]
        assert len(matched) == 1, monitor["metadata"]["name"]
        assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= matched[0]
    worker_monitor = one(objects, "PodMonitor", "cs-pulse-worker")
    relabel = worker_monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
    assert {"targetLabel": "job", "replacement": "cs-pulse"} in relabel, \
        'the rules and boards read up{job="cs-pulse"}'
    for budget in of_kind(objects, "PodDisruptionBudget"):
        assert any(_selects(budget["spec"]["selector"]["matchLabels"], labels)
                   for labels, _ in pods), budget["metadata"]["name"]
    for pool in of_kind(objects, "KafkaNodePool"):
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == one(
            objects, "Kafka", "cs-pulse")["metadata"]["name"]


def test_dev_is_one_small_worker_and_prod_spreads_many_with_budgets() -> None:
    dev, prod = rendered("dev"), rendered("prod")
    assert one(dev, "Deployment", "cs-pulse-worker")["spec"]["replicas"] == 1
    assert not of_kind(dev, "PodDisruptionBudget")
    worker = one(prod, "Deployment", "cs-pulse-worker")
    assert worker["spec"]["replicas"] > 1
    spread = worker["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"kubernetes.io/hostname",
                                                  "topology.kubernetes.io/zone"}
    assert one(prod, "PodDisruptionBudget", "cs-pulse-worker")["spec"]["maxUnavailable"] == 1
    assert {t["spec"]["replicas"] for t in of_kind(prod, "KafkaTopic")} == {3}
    assert sum(p["spec"]["replicas"] for p in of_kind(prod, "KafkaNodePool")) == 3
