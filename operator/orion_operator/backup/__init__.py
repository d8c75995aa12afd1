"""Backups: pg_dump and tenant CSV exports streamed to a volume or S3. No Kubernetes here."""
