"""Alerts: when to raise them (state), and how to deliver them (channels). No Kubernetes here."""
