#!/usr/bin/env bash
# Rewrites the vendored CRDs that tests/deploy/test_k8s_manifests.py validates the manifests
# against, from pinned releases, then checks them against SHA256SUMS (./fetch.sh --update
# rewrites that instead, after a version bump). Not run by ./dev: the files are committed, so
# the test runs offline. Needs go, mvn and a Java >= 21 (JAVA=/path/to/java).
#   Prometheus Operator v0.85.0 (PodMonitor, PrometheusRule): the module's
#     example/prometheus-operator-crd/, through the Go module proxy (go mod download checks
#     the module's hash against the checksum database).
#   Strimzi 1.2.0 (Kafka, KafkaNodePool, KafkaTopic, KafkaUser): io.strimzi:api and io.strimzi:crd-generator
#     from Maven Central, and the generator run as Strimzi's own build runs it.
set -euo pipefail
cd "$(dirname "$0")"
PROMETHEUS_OPERATOR=v0.85.0

dir=$(GOFLAGS=-mod=mod go mod download -json \
  "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
for kind in podmonitors prometheusrules; do
  install -m 644 "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" .
done

cp=$(mktemp)
mvn -q -f strimzi-pom.xml dependency:build-classpath -Dmdep.outputFile="$cp"
"${JAVA:-java}" -cp "$(cat "$cp")" io.strimzi.crdgenerator.CrdGenerator \
  --label app:strimzi --label strimzi.io/crd-install:true --target-kube 1.16+ \
  --crd-api-version v1 --api-versions v1 --storage-version v1 --yaml \
  io.strimzi.api.kafka.model.kafka.Kafka=./040-Crd-kafka.yaml \
  io.strimzi.api.kafka.model.topic.KafkaTopic=./043-Crd-kafkatopic.yaml \
  io.strimzi.api.kafka.model.user.KafkaUser=./044-Crd-kafkauser.yaml \
  io.strimzi.api.kafka.model.nodepool.KafkaNodePool=./045-Crd-kafkanodepool.yaml
rm -f "$cp"

if [ "${1:-}" = --update ]; then
  sha256sum ./*.yaml > SHA256SUMS
else
  sha256sum -c --quiet SHA256SUMS
fi
