"""What the tests' engine starters share (``s3_server``, ``oci_registry``): free ports, stopping.

Each starter runs a real server as a child process with its log in a file; these
pick the loopback ports it listens on and end it by its pid.
"""

from __future__ import annotations

import socket
import subprocess

__all__ = ["free_ports", "stop"]


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free now (held open together while picked)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    """End a server: SIGTERM, and SIGKILL if it has not exited 20 s later."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
