"""The container HEALTHCHECK: the process in this container answers /healthz, on the API's
port (ORCH_API_PORT) or on a worker's (ORCH_WORKER_METRICS_ADDRESS). Standard library only.

    python -m deploy.healthcheck    # exit 0: healthy, 1: not
"""

from __future__ import annotations

import os
import sys
import urllib.request


def main() -> int:
    ports = [os.environ.get("ORCH_API_PORT", "8000")]
    worker = os.environ.get("ORCH_WORKER_METRICS_ADDRESS", "")
    if worker:
        ports.append(worker.rpartition(":")[2])
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return 0
        except OSError:
            continue
    return 1


if __name__ == "__main__":
    sys.exit(main())
