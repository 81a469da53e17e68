"""One probe from inside the network: `probe.py http://host:port/path [TIMEOUT]` or `probe.py host:port`.

Exit 0 when an HTTP GET answers 2xx/3xx (the kubelet's httpGet rule) or a TCP
connection opens; 1 otherwise. Standard library only (runs in the image's Python).
"""

from __future__ import annotations

import socket
import sys
import urllib.error
import urllib.request


def main(target: str, timeout: float) -> int:
    if target.startswith("http://"):
        try:
            with urllib.request.urlopen(target, timeout=timeout) as response:
                return 0 if 200 <= response.status < 400 else 1
        except (urllib.error.URLError, OSError):
            return 1
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return 0
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 5.0))
