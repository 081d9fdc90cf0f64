"""The sample Web role: a page, a job queue the Worker role drains, and the jobs' results.

Input endpoint HttpIn (port 8080 on the instance): `/` (the page: package version, the
Greeting setting, the instance), `/health`, `/submit?job=<text>`, `/results` and
`/certificates` (the SHA-1 thumbprint of each certificate the fabric installed). Internal
endpoint Work (port 8081, for the service's other roles): `GET /next` hands out a job,
`POST /done` takes its result. Settings are re-read on SIGHUP, which the guest agent sends
when the configuration changes: no restart needed.
"""

import base64
import hashlib
import json
import os
import queue
import re
import signal
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "v1"
ENVIRONMENT = os.environ.get("CLOUDSERVICE_ROLE_ENVIRONMENT", "role.json")


def load_environment():
    with open(ENVIRONMENT) as handle:
        return json.load(handle)


environment = load_environment()
jobs = queue.Queue()
results = []


def reload(_signal, _frame):
    global environment
    environment = load_environment()


signal.signal(signal.SIGHUP, reload)


def thumbprints():
    """Certificate name -> SHA-1 of its DER, from the files the agent wrote."""
    found = {}
    for item in environment.get("certificates", []):
        path = os.path.join(os.path.dirname(ENVIRONMENT), item["path"])
        with open(path) as handle:
            pem = handle.read()
        body = re.search(r"-----BEGIN CERTIFICATE-----(.+?)-----END", pem, re.DOTALL)
        der = base64.b64decode("".join(body.group(1).split()))
        found[item["name"]] = hashlib.sha1(der).hexdigest()
    return found


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, body, kind="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args):
        pass


class Public(Handler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/health":
            return self.answer(200, "ok\n")
        if url.path == "/submit":
            job = urllib.parse.parse_qs(url.query).get("job", [""])[0]
            jobs.put(job)
            return self.answer(202, f"queued {job}\n")
        if url.path == "/results":
            return self.answer(200, json.dumps(results), "application/json")
        if url.path == "/certificates":
            return self.answer(200, json.dumps(thumbprints()), "application/json")
        greeting = environment["settings"].get("Greeting", "")
        instance = environment["instanceId"]
        return self.answer(200, f"web {VERSION}: {greeting} from {instance}\n")


class Internal(Handler):
    def do_GET(self):
        try:
            job = jobs.get_nowait()
        except queue.Empty:
            return self.answer(204, "")
        return self.answer(200, job)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        results.append(json.loads(self.rfile.read(length)))
        return self.answer(200, "thanks\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A load balancer's health check may hang up as soon as it has the status line.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def serve(handler, port):
    Server(("0.0.0.0", port), handler).serve_forever()


threading.Thread(target=serve, args=(Internal, 8081), daemon=True).start()
serve(Public, 8080)
