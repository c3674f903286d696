"""JSON Schemas, written here, for the custom resources the manifests use,
covering the fields tpserve uses (unknown fields are errors, so a misspelt
field fails). Written from each project's published API types:

  leaderworkerset.x-k8s.io/v1  LeaderWorkerSet            LWS api/leaderworkerset/v1 (with the
                                                          `None` restart policy)
  monitoring.coreos.com/v1     ServiceMonitor, PodMonitor, PrometheusRule
                                                          Prometheus Operator v0.75
  keda.sh/v1alpha1             ScaledObject               KEDA v2.14
  cert-manager.io/v1           Issuer, Certificate        cert-manager v1.14 (examples/)

Pod templates inside a LeaderWorkerSet are not described here: the test
validates them with Kubernetes' own PodTemplateSpec schema.

    schema = SCHEMAS[("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")]
    jsonschema.validate(obj, schema)
"""


def strict(properties, required=()):
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False}


STRING = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
INT_OR_STRING = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
# Prometheus durations as the operator's CRDs validate them.
DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
                                          r"(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
OBJECT_META = {"type": "object", "required": ["name"], "properties": {
    "name": STRING, "namespace": STRING, "labels": STRING_MAP, "annotations": STRING_MAP}}
LABEL_SELECTOR = strict({
    "matchLabels": STRING_MAP,
    "matchExpressions": {"type": "array", "items": strict({
        "key": STRING, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
        "values": {"type": "array", "items": STRING}}, ["key", "operator"])}})
# A pod template: only its shape here; its content is checked against
# Kubernetes' PodTemplateSpec schema separately.
POD_TEMPLATE = {"type": "object", "required": ["spec"],
                "properties": {"metadata": {"type": "object"}, "spec": {"type": "object"}},
                "additionalProperties": False}


def resource(api_version, kind, spec, spec_required=True):
    return strict({"apiVersion": {"const": api_version}, "kind": {"const": kind},
                   "metadata": OBJECT_META, "spec": spec},
                  ["apiVersion", "kind", "metadata"] + (["spec"] if spec_required else []))


LEADER_WORKER_SET = resource("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", strict({
    "replicas": {"type": "integer", "minimum": 0},
    "startupPolicy": {"enum": ["LeaderCreated", "LeaderReady"]},
    "rolloutStrategy": strict({
        "type": {"enum": ["RollingUpdate"]},
        "rollingUpdateConfiguration": strict({
            "partition": {"type": "integer", "minimum": 0},
            "maxUnavailable": INT_OR_STRING, "maxSurge": INT_OR_STRING})}, ["type"]),
    "networkConfig": strict({"subdomainPolicy": {"enum": ["Shared", "UniquePerReplica"]}},
                            ["subdomainPolicy"]),
    "leaderWorkerTemplate": strict({
        "leaderTemplate": POD_TEMPLATE,
        "workerTemplate": POD_TEMPLATE,
        "size": {"type": "integer", "minimum": 1},
        "restartPolicy": {"enum": ["Default", "RecreateGroupOnPodRestart", "None"]},
        "subGroupPolicy": strict({"subGroupSize": {"type": "integer", "minimum": 1}})},
        ["workerTemplate"]),
}, ["leaderWorkerTemplate"]))

RELABEL = strict({
    "action": {"enum": ["replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod",
                        "labelmap", "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep",
                        "lowercase", "Lowercase", "uppercase", "Uppercase", "keepequal",
                        "KeepEqual", "dropequal", "DropEqual"]},
    "sourceLabels": {"type": "array", "items": {"type": "string",
                                                "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"}},
    "separator": STRING, "targetLabel": STRING, "regex": STRING,
    "modulus": INT, "replacement": STRING})

_ENDPOINT = {
    "path": STRING, "scheme": {"enum": ["http", "https"]}, "interval": DURATION,
    "scrapeTimeout": DURATION, "honorLabels": BOOL, "honorTimestamps": BOOL,
    "relabelings": {"type": "array", "items": RELABEL},
    "metricRelabelings": {"type": "array", "items": RELABEL},
    "params": {"type": "object"}}
NAMESPACE_SELECTOR = strict({"any": BOOL, "matchNames": {"type": "array", "items": STRING}})

SERVICE_MONITOR = resource("monitoring.coreos.com/v1", "ServiceMonitor", strict({
    "jobLabel": STRING, "targetLabels": {"type": "array", "items": STRING},
    "podTargetLabels": {"type": "array", "items": STRING},
    "endpoints": {"type": "array", "items": strict(dict(_ENDPOINT, port=STRING,
                                                       targetPort=INT_OR_STRING))},
    "selector": LABEL_SELECTOR, "namespaceSelector": NAMESPACE_SELECTOR,
    "sampleLimit": INT}, ["selector"]))

POD_MONITOR = resource("monitoring.coreos.com/v1", "PodMonitor", strict({
    "jobLabel": STRING, "podTargetLabels": {"type": "array", "items": STRING},
    "podMetricsEndpoints": {"type": "array", "items": strict(dict(
        _ENDPOINT, port=STRING, portNumber={"type": "integer", "minimum": 1, "maximum": 65535},
        targetPort=INT_OR_STRING))},
    "selector": LABEL_SELECTOR, "namespaceSelector": NAMESPACE_SELECTOR,
    "sampleLimit": INT}, ["selector"]))

RULE = {"type": "object", "additionalProperties": False, "required": ["expr"],
        "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
        "properties": {"alert": STRING, "record": STRING, "expr": INT_OR_STRING,
                       "for": DURATION, "keep_firing_for": DURATION,
                       "labels": STRING_MAP, "annotations": STRING_MAP}}
PROMETHEUS_RULE = resource("monitoring.coreos.com/v1", "PrometheusRule", strict({
    "groups": {"type": "array", "items": strict({
        "name": {"type": "string", "minLength": 1}, "interval": DURATION,
        "limit": INT, "partial_response_strategy": STRING,
        "rules": {"type": "array", "items": RULE}}, ["name"])}}))

SCALED_OBJECT = resource("keda.sh/v1alpha1", "ScaledObject", strict({
    "scaleTargetRef": strict({"apiVersion": STRING, "kind": STRING, "name": STRING,
                              "envSourceContainerName": STRING}, ["name"]),
    "pollingInterval": INT, "cooldownPeriod": INT, "initialCooldownPeriod": INT,
    "idleReplicaCount": INT, "minReplicaCount": INT, "maxReplicaCount": INT,
    "fallback": strict({"failureThreshold": INT, "replicas": INT},
                       ["failureThreshold", "replicas"]),
    "advanced": {"type": "object"},
    "triggers": {"type": "array", "minItems": 1, "items": strict({
        "type": STRING, "name": STRING, "useCachedMetrics": BOOL,
        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
        "metadata": STRING_MAP,
        "authenticationRef": strict({"name": STRING, "kind": STRING}, ["name"])},
        ["type", "metadata"])}}, ["scaleTargetRef", "triggers"]))

# Go durations, as cert-manager parses them ("2160h", "90m").
GO_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"}
KEY_USAGES = ["signing", "digital signature", "content commitment", "key encipherment",
              "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only",
              "decipher only", "any", "server auth", "client auth", "code signing",
              "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user",
              "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"]
STRINGS = {"type": "array", "items": STRING}

CERT_MANAGER_ISSUER = resource("cert-manager.io/v1", "Issuer", {
    "type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1,
    "properties": {
        "selfSigned": strict({"crlDistributionPoints": STRINGS}),
        "ca": strict({"secretName": STRING, "crlDistributionPoints": STRINGS,
                      "ocspServers": STRINGS}, ["secretName"]),
        "acme": {"type": "object"}, "vault": {"type": "object"}, "venafi": {"type": "object"}}})

CERT_MANAGER_CERTIFICATE = resource("cert-manager.io/v1", "Certificate", strict({
    "secretName": STRING, "commonName": STRING, "dnsNames": STRINGS, "ipAddresses": STRINGS,
    "uris": STRINGS, "emailAddresses": STRINGS, "subject": {"type": "object"},
    "duration": GO_DURATION, "renewBefore": GO_DURATION, "isCA": BOOL,
    "usages": {"type": "array", "items": {"enum": KEY_USAGES}},
    "privateKey": strict({"algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]}, "size": INT,
                          "encoding": {"enum": ["PKCS1", "PKCS8"]},
                          "rotationPolicy": {"enum": ["Never", "Always"]}}),
    "issuerRef": strict({"name": STRING, "kind": STRING, "group": STRING}, ["name"]),
    "secretTemplate": strict({"annotations": STRING_MAP, "labels": STRING_MAP}),
    "revisionHistoryLimit": INT}, ["secretName", "issuerRef"]))

SCHEMAS = {
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"): LEADER_WORKER_SET,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PodMonitor"): POD_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("cert-manager.io/v1", "Issuer"): CERT_MANAGER_ISSUER,
    ("cert-manager.io/v1", "Certificate"): CERT_MANAGER_CERTIFICATE,
}
