"""What clusterodm tells an operator whose cluster has no processing node yet.

ClusterODM starts silently with an empty node list and answers `/info` with `"engine": "?"`;
its users then wonder why no task ever runs (ClusterODM issue 118). The same words go to the log
at start, to the log when a client asks `/info` of an empty cluster, and to the admin page.
"""

from __future__ import annotations

import time

from clusterodm.config import Config

NO_NODE_REPEAT_S = 60.0
"""A client polling `/info` of an empty cluster gets the notice logged at most this often."""


def local_address(address: str) -> str:
    """How to address a listener from the machine it runs on."""
    return "127.0.0.1" if address in ("0.0.0.0", "::", "") else address


def how_to_add_a_node(config: Config) -> str:
    """The ways to add a node this configuration leaves open, as one sentence."""
    admin = local_address(config.admin_address)
    ways = []
    if config.admin_cli_port:
        ways.append(
            f"the admin CLI (telnet {admin} {config.admin_cli_port}, then NODE ADD <host> <port> [token])"
        )
    if config.admin_web_port:
        ways.append(
            f"from the admin web page (http://{admin}:{config.admin_web_port}, Add Node; or "
            'POST /r/node/add {"hostname": "<host>", "port": <port>} there)'
        )
    ways.append(f"by listing it in {config.data_dir / 'nodes.json'} and restarting")
    return "Add a NodeODM node " + ", or ".join(ways) + "."


def no_node_notice(config: Config) -> str:
    """One line saying the cluster cannot process anything yet, and how to change that."""
    return (
        f"No processing node is configured: tasks cannot run until one is added. {how_to_add_a_node(config)}"
    )


class Throttle:
    """Lets an action through at most once every `period_s` seconds."""

    def __init__(self, period_s: float) -> None:
        self._period_s = period_s
        self._last: float | None = None

    def ready(self) -> bool:
        now = time.monotonic()
        if self._last is not None and now - self._last < self._period_s:
            return False
        self._last = now
        return True
