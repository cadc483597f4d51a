"""The tokenfleet operator: reconciles InferenceDeployments into worker fleets and sizes them.

Pure modules (resource, children, policy and its helpers, status, metrics_parsing, crd) import no kopf,
kubernetes or httpx; `kube`, `metrics_source` and `handlers` are the only modules that do I/O.
"""

GROUP = "tokenfleet.io"
VERSION = "v1alpha1"
PLURAL = "inferencedeployments"
KIND = "InferenceDeployment"
FIELD_MANAGER = "tokenfleet-operator"
