"""Local stand-ins for a cluster's dependencies, used by `orion-operator dev` and the tests."""
