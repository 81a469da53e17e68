"""Call the workflow gateway from inside the network, the way a user's client would.

    gateway_call.py URL USER PASSWORD JSON_BODY

Prints one JSON line {"status": ..., "body": ...}. Tries a bounded number of times
while the gateway is not reachable yet (connection errors only); an HTTP answer,
whatever its status, is printed as it is. Standard library only.
"""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.error
import urllib.request

ATTEMPTS = 20
REQUEST_TIMEOUT = 300


def main(url: str, user: str, password: str, body: str) -> int:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        url,
        data=body.encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"},
        method="POST",
    )
    for attempt in range(ATTEMPTS):
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
                print(json.dumps({"status": response.status, "body": response.read().decode()}))
                return 0
        except urllib.error.HTTPError as exc:
            print(json.dumps({"status": exc.code, "body": exc.read().decode()}))
            return 0
        except (urllib.error.URLError, OSError) as exc:
            print(f"attempt {attempt + 1}/{ATTEMPTS}: {exc}", file=sys.stderr)
            time.sleep(3)
    return 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
