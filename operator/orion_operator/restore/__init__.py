"""Restores: platform backups into a database, tenant ZIPs into their tenant (no Kubernetes)."""
