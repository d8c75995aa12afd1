"""A demo API that implements the runbook's GET /health contract from real checks."""
