"""clusterodm: a fast, drop-in compatible ClusterODM."""

__version__ = "0.1.0"
