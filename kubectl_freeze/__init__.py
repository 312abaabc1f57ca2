"""kubectl-freeze: freeze and thaw KubeVirt guest filesystems for consistent backups."""

__version__ = "0.1.0"
