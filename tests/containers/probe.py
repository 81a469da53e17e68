"""One probe from inside the network: `probe.py http://host:port/path` or `probe.py host:port`.

Exit 0 when an HTTP GET answers 2xx/3xx (the kubelet's httpGet rule) or a TCP
connection opens; 1 otherwise. Standard library only (runs in the image's Python).
"""

from __future__ import annotations

import socket
import sys
import urllib.error
import urllib.request

TIMEOUT = 5


def main(target: str) -> int:
    if target.startswith("http://"):
        try:
            with urllib.request.urlopen(target, timeout=TIMEOUT) as response:
                return 0 if 200 <= response.status < 400 else 1
        except (urllib.error.URLError, OSError):
            return 1
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=TIMEOUT):
            return 0
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
