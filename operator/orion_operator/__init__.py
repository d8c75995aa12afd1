"""Orion Operator: the Orion operations runbook as a Kubernetes operator."""

__version__ = "0.1.0"

API_GROUP = "orion.io"
API_VERSION = "v1alpha1"
