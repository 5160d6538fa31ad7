"""The e2e compose project's app: answers what its context looks like (env, names, files, redis)."""
import json
import os
import socket
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def redis_ping(host):
    with socket.create_connection((host, 6379), timeout=5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).decode().strip()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            if url.path == "/env":
                body = json.dumps(dict(os.environ))
            elif url.path == "/resolve":
                body = socket.gethostbyname(q["name"])
            elif url.path == "/fetch":
                body = urllib.request.urlopen(q["url"], timeout=5).read().decode()
            elif url.path == "/file":
                body = open(q["path"]).read()
            elif url.path == "/hostname":
                body = socket.gethostname()
            elif url.path == "/redis":
                body = redis_ping(q.get("host", "redis"))
            else:
                body = "app"
            code = 200
        except Exception as e:  # the test reads the reason
            body, code = f"{type(e).__name__}: {e}", 500
        data = body.encode()
        self.send_response(code)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


port = int(os.environ.get("APP_PORT", "8000"))
server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
print(f"app listening on {port}", flush=True)
sys.stdout.flush()
server.serve_forever()
