"""KubeVirt behaviour behind the simulated API server, on the rig's real guests."""
