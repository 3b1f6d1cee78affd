#!/usr/bin/env python3
"""Silent sockets against a running tidings server (spec/benchmarks.md).

Opens N TCP connections to HOST:PORT that never send a byte, then, while they are
open, times a series of new clients doing `GET /_matrix/client/versions`, and
reports when the server closed the silent ones. Loopback only; it stops by itself.

    python3 sytest/silent_sockets.py 127.0.0.1:8008 241 [new_clients]
"""

import http.client
import select
import socket
import sys
import threading
import time


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    port = int(port)
    count = int(sys.argv[2])
    clients = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    if not host.startswith("127.") and host != "localhost":
        sys.exit("loopback only")

    start = time.monotonic()
    silent = []
    for _ in range(count):
        # A blocking connect returns once the handshake is done, so the silent
        # sockets are queued at the server ahead of the new clients below.
        s = socket.create_connection((host, port), timeout=10)
        s.setblocking(False)
        silent.append(s)
    print(f"opened {count} silent sockets in {time.monotonic() - start:.3f} s")
    # Let the server accept what it will (up to its bound) before the new clients.
    time.sleep(0.5)

    closed_at = {}

    def watch():
        pending = {s.fileno(): s for s in silent}
        while pending and time.monotonic() - start < 300:
            ready, _, _ = select.select(list(pending.values())[:1000], [], [], 0.5)
            for s in ready:
                try:
                    data = s.recv(1)
                except OSError:
                    data = b""
                if not data:
                    closed_at[s.fileno()] = time.monotonic() - start
                    del pending[s.fileno()]

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    for i in range(clients):
        t0 = time.monotonic()
        try:
            conn = http.client.HTTPConnection(host, port, timeout=120)
            conn.request("GET", "/_matrix/client/versions")
            status = conn.getresponse().status
            conn.close()
        except Exception as e:  # noqa: BLE001 - report whatever happened
            status = f"error: {e}"
        t1 = time.monotonic()
        closed = sum(1 for t in closed_at.values() if t <= t1 - start)
        print(
            f"new client {i + 1}: {status} after {t1 - t0:.3f} s "
            f"(at t={t1 - start:.3f} s; {closed} of {count} silent sockets closed by the server by then)"
        )

    watcher.join(timeout=120)
    times = sorted(closed_at.values())
    if times:
        print(
            f"server closed {len(times)} of {count} silent sockets: "
            f"first at t={times[0]:.3f} s, last at t={times[-1]:.3f} s"
        )
    else:
        print(f"server closed none of the {count} silent sockets")
    for s in silent:
        s.close()


if __name__ == "__main__":
    main()
