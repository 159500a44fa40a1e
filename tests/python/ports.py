"""Loopback ports for the nodes the python and docker test suites start."""

import os
import socket

_FIRST_PORT, _PORT_SPAN = 20000, 12000
_port_offset = [(os.getpid() * 7919) % _PORT_SPAN]


def free_ports(count: int) -> list[int]:
    """Distinct TCP ports free on 127.0.0.1, below Linux's ephemeral range (32768 and up),
    so that no outgoing connection takes one before the node binds it (a port the kernel
    picks for port 0 is one it may hand to the next outgoing connection). Each port is
    handed out once per test run."""
    ports: list[int] = []
    for _ in range(_PORT_SPAN):
        if len(ports) == count:
            return ports
        port = _FIRST_PORT + _port_offset[0] % _PORT_SPAN
        _port_offset[0] += 1
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    if len(ports) == count:
        return ports
    raise RuntimeError("ran out of test ports")
