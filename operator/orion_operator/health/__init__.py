"""The API's /health contract: probing, classification and triage. No Kubernetes here."""
