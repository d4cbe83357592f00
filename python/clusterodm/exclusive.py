"""granian's embedded server on a listening port that no other process can share.

granian binds its listening sockets with SO_REUSEPORT (meant for its own worker processes). A
second process binding the same port with SO_REUSEPORT then succeeds as well, and the kernel
silently splits the incoming connections between the two: a second clusterodm started by
mistake, or an overlapping restart, answers half the clients with its own tasks and token (an
unexpected 401, tasks that come and go). A port check before the start cannot close that gap
when both start at the same moment. Here the socket is bound without SO_REUSEPORT, so whichever
process binds second gets EADDRINUSE and stops, and no later socket can join the port either.
"""

from __future__ import annotations

import ipaddress
import socket

from granian.net import SocketHolder
from granian.server.embed import Server


class ExclusiveServer(Server):
    """`granian.server.embed.Server` listening on a socket of ours, without SO_REUSEPORT."""

    def _init_shared_socket(self) -> None:
        """Bind and listen (raises `OSError` EADDRINUSE when the port is taken).

        granian's worker takes the socket from `_shd` when `_ssp` is None (its path on platforms
        without SO_REUSEPORT), calls listen() again (harmless), and closes it when it stops.
        """
        if self.bind_uds:  # not used by clusterodm; keep granian's own handling
            super()._init_shared_socket()
            return
        ip = ipaddress.ip_address(self.bind_addr)  # granian takes IP literals only, too
        sock = socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
        try:
            # As granian does: restart at once despite connections left in TIME_WAIT (this does
            # not let another socket bind a port that is listening), and no Nagle delay on the
            # accepted connections, which inherit it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((self.bind_addr, self.bind_port))
            # Here, not in granian's worker: two sockets with SO_REUSEADDR can both bind a port
            # nobody listens on yet; the second listen() is what fails, and the worker would panic.
            sock.listen(self.backlog)
        except BaseException:
            sock.close()
            raise
        holder = SocketHolder(sock.detach(), False, self.backlog)  # type: ignore[call-arg]
        self._ssp = None
        self._shd = holder  # type: ignore[assignment]  # granian's attributes start as None
        self._sfd = holder.get_fd()
