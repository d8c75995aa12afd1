"""The ApiDeployment's owned objects and scaling decisions, without Kubernetes calls."""
