"""The sample Worker role: takes jobs from every Web instance's internal endpoint (Work),
does them (upper-cases the text) and hands the results back with who did them.

It finds the Web instances in the topology of its role environment (docs/guest.md), and
re-reads that on SIGHUP when the configuration changes.
"""

import json
import os
import signal
import time
import urllib.request

ENVIRONMENT = os.environ.get("CLOUDSERVICE_ROLE_ENVIRONMENT", "role.json")


def load_environment():
    with open(ENVIRONMENT) as handle:
        return json.load(handle)


environment = load_environment()


def reload(_signal, _frame):
    global environment
    environment = load_environment()


signal.signal(signal.SIGHUP, reload)


def work_endpoints():
    for instance in environment["topology"]["roles"].get("Web", {}).get("instances", []):
        port = instance["endpoints"]["Work"]["port"]
        yield f"http://{instance['address']}:{port}"


while True:
    for base in list(work_endpoints()):
        try:
            with urllib.request.urlopen(f"{base}/next", timeout=2) as answer:
                job = answer.read().decode() if answer.status == 200 else None
            if job is None:
                continue
            result = {
                "job": job,
                "result": job.upper(),
                "by": environment["instanceId"],
                "greeting": environment["settings"].get("Greeting", ""),
            }
            request = urllib.request.Request(
                f"{base}/done", data=json.dumps(result).encode(), method="POST"
            )
            urllib.request.urlopen(request, timeout=2).close()
        except OSError:
            pass  # that instance is restarting: the next round tries again
    time.sleep(0.5)
