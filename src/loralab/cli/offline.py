"""No network without --online: a guard on Python's sockets around a whole command.

Hugging Face libraries read HF_HUB_OFFLINE when first imported and honour it only on some paths, so
setting the variable does not prove a command stays offline (a run recorded with a relative model
path, evaluated from another folder, asked the hub for it). The guard refuses, in one line, every
name lookup and connection beyond this machine unless the command was given --online. Loopback,
Unix sockets, this machine's own name and addresses and the torchrun rendezvous host (MASTER_ADDR)
stay open: those are a run's own processes.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from typing import Iterator

from loralab.errors import LoralabError

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", ""}


class NetworkRefused(LoralabError):
    """A command without --online tried to reach another machine."""


def _local(host: object, allowed: set[str]) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).split("%")[0]
    if host.lower() in _LOCAL_NAMES or host in allowed:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


@contextlib.contextmanager
def offline_sockets(online: bool, hosts: tuple[str, ...] = ()) -> Iterator[None]:
    """Within the block, without `online`, a lookup of or connection to a machine other than this one and
    `hosts` (a Ray cluster, a study's database named on the command line) raises `NetworkRefused`."""
    if online:
        yield
        return
    allowed = {host for host in (os.environ.get("MASTER_ADDR"), socket.gethostname(), *hosts) if host}
    originals = (socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex)
    lookup, connect, connect_ex = originals
    try:  # this machine by its own name and addresses (a local Ray instance listens on them)
        allowed.update(str(info[4][0]) for info in lookup(socket.gethostname(), None))
    except OSError:
        pass

    def refuse(host: object) -> NetworkRefused:
        return NetworkRefused(f"network access to {host} refused: loralab stays offline unless --online is given "
                              "(a model or file named that is not found on this machine?)")

    def guarded_lookup(host, *args, **kwargs):
        if not _local(host, allowed):
            raise refuse(host)
        results = lookup(host, *args, **kwargs)
        if host in allowed:  # the rendezvous host by name: its addresses too
            allowed.update(str(info[4][0]) for info in results)
        return results

    def check(sock: socket.socket, address) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0], allowed):
            raise refuse(address[0])

    def guarded_connect(sock, address):
        check(sock, address)
        return connect(sock, address)

    def guarded_connect_ex(sock, address):
        check(sock, address)
        return connect_ex(sock, address)

    socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex = (guarded_lookup, guarded_connect,
                                                                          guarded_connect_ex)
    try:
        yield
    finally:
        socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex = originals
