"""API4: a process out of descriptors logs its accept errors at a rate, not a traceback each.

A real listener in a subprocess whose descriptors are all taken: every
connection a client makes fails ``accept()`` with ``EMFILE`` (asyncio tries up
to its backlog each round, and again a second later). Before, each failure was
a log record with a traceback (1,536 of them in this test's 3.5 s; 147 MB a
minute under a flood); now one line per interval carries the count.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time

SERVER = textwrap.dedent(
    """
    import asyncio, os, resource, sys
    from aiohttp import web
    from shared.logs import configure_logging
    from shared.web.serve import ConnectionGuard, ConnectionLimits, listen

    async def main() -> None:
        configure_logging("INFO")
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        guard = ConnectionGuard(ConnectionLimits(max_connections=1000, log_interval_s=60))
        loop = asyncio.get_running_loop()
        with guard.installed(loop):
            listener = await listen(web.Application(), "127.0.0.1", 0, guard)
            hog = []
            try:
                while True:
                    hog.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                pass
            print(listener.port, flush=True)
            await asyncio.sleep(float(sys.argv[1]))
            for fd in hog:
                os.close(fd)
            await listener.close()

    asyncio.run(main())
    """
)
RUN_S = 3.5


def test_accept_errors_are_counted_into_one_line_per_interval() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(RUN_S)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    clients: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        for _ in range(20):  # the kernel completes the handshakes; accept() then fails
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            time.sleep(0.01)
        _, err = proc.communicate(timeout=30)
    finally:
        for client in clients:
            client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    accept = [line for line in lines if line["msg"] == "accept errors"]
    assert "Traceback" not in err and "out of system resource" not in err.replace(
        '"error": "[Errno 24] Too many open files"', ""
    )
    # The first error at once, the rest folded into the line written at shutdown.
    assert 1 <= len(accept) <= 2, accept
    assert accept[0]["count"] == 1 and "Too many open files" in accept[0]["error"]
    assert sum(line["count"] for line in accept) >= 2  # asyncio retried and failed again
