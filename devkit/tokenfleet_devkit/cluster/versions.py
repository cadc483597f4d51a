"""Pinned versions of everything the local control plane is built from.

One Kubernetes minor is pinned; the staging modules (k8s.io/api, ...) are published as
v0.<minor>.<patch> alongside k8s.io/kubernetes v1.<minor>.<patch>.
"""

from __future__ import annotations

import os
from pathlib import Path

KUBERNETES = "v1.37.2"
STAGING = "v0." + KUBERNETES.removeprefix("v1.")
ETCD = "v3.7.3"
KWOK = "v0.8.0"
HELM = "v4.3.1"

# Staging modules that k8s.io/kubernetes requires as v0.0.0 and resolves with relative replaces.
STAGING_MODULES = [
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "cri-streaming",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
    "streaming",
]

KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


def cache_dir() -> Path:
    """Where builds, the venv and cluster state live: outside the repository, reused across runs."""
    root = os.environ.get("TOKENFLEET_CACHE") or Path.home() / ".cache" / "tokenfleet"
    return Path(root)


def bin_dir() -> Path:
    """One folder per pinned version set, so a version bump rebuilds instead of reusing."""
    tag = f"k8s-{KUBERNETES}_etcd-{ETCD}_kwok-{KWOK}_helm-{HELM}"
    return cache_dir() / "bin" / tag
