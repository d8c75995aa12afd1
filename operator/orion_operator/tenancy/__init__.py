"""Tenants in the application database: their row, their data, their counts. No Kubernetes here."""
