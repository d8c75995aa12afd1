"""Small helpers over the Kubernetes client (lightkube's AsyncClient)."""
