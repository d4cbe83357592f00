"""Control-plane core: node registry, route index, local task table, node client and health poller.

The proxy, the task pipeline, the admin CLI/web and the autoscaler all share these objects; they
are created once by `clusterodm.main` and passed around explicitly (no module-level state).
"""
