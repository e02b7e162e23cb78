# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`python -m demo_app.server`: the HTTP API (stdlib ThreadingHTTPServer).

Routes (each also answers under /api/v1/..., the TenderPulse spelling):
  GET  /api/health                 health verdict, 200 ok / 503 otherwise
  GET  /metrics                    Prometheus text format
  GET  /api/feature-flags          rows of feature_flags
  POST /api/admin/trigger-ingest   Bearer DEMO_ADMIN_TOKEN; optional JSON body
                                   {"type": "ingest"|"fail"}; 202 {"job_id": ...}
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, ClassVar
from urllib.parse import urlsplit

import psycopg
import redis

from demo_app import auth, clients, health, jobs, logs, metrics, probes
from demo_app.config import Config, ConfigError, from_env

log = logging.getLogger("demo_app.server")

MAX_BODY = 4096  # the only body we accept is a tiny JSON object
FLAGS_SQL = """
    SELECT name, enabled, kill_switch, rollout_percentage, description, updated_at
      FROM feature_flags ORDER BY name
"""


@dataclass
class Response:
    code: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(code: int, data: Any, **headers: str) -> Response:
    return Response(code, (json.dumps(data) + "\n").encode("utf-8"), headers=headers)


def canonical_path(path: str) -> str:
    """Map /api/v1/x to /api/x so both spellings share routes and metrics."""
    return "/api/" + path[len("/api/v1/"):] if path.startswith("/api/v1/") else path


class DemoServer(ThreadingHTTPServer):
    # server_close() joins in-flight request threads (block_on_close), which
    # is what makes SIGTERM graceful.
    daemon_threads = True

    def __init__(self, cfg: Config) -> None:
        if ":" in cfg.http_host:
            self.address_family = socket.AF_INET6
        super().__init__((cfg.http_host, cfg.http_port), Handler)
        self.cfg = cfg
        self.requests = metrics.RequestCounter()
        self.redis = clients.redis_client(cfg)


Route = Callable[["Handler"], Response]


class Handler(BaseHTTPRequestHandler):
    server: DemoServer
    server_version = "demo_app"
    sys_version = ""  # don't advertise the Python version

    # -- routes -------------------------------------------------------------

    def get_health(self) -> Response:
        cfg = self.server.cfg
        code, body = health.evaluate(
            probes.probe_database(cfg),
            probes.probe_redis(self.server.redis, cfg),
            cfg.stale_seconds,
            cfg.version,
        )
        return json_response(code, body, **{"Cache-Control": "no-store"})

    def get_metrics(self) -> Response:
        cfg = self.server.cfg
        db = probes.probe_database(cfg)
        rd = probes.probe_redis(self.server.redis, cfg)
        text = metrics.render(
            metrics.build(self.server.requests.snapshot(), db, rd, cfg.version, cfg.queue)
        )
        return Response(200, text.encode("utf-8"), metrics.CONTENT_TYPE)

    def get_feature_flags(self) -> Response:
        try:
            with clients.pg_connect(self.server.cfg, "demo_app-api") as conn:
                rows = conn.execute(FLAGS_SQL).fetchall()
        except psycopg.Error as exc:
            return json_response(503, {"error": f"database unavailable: {clients.short_error(exc)}"})
        return json_response(200, [
            {
                "name": name,
                "enabled": enabled,
                "kill_switch": kill,
                "rollout_percentage": pct,
                # What the app would actually do: the kill switch wins.
                "active": bool(enabled and not kill and pct > 0),
                "description": desc,
                "updated_at": updated.isoformat(),
            }
            for name, enabled, kill, pct, desc, updated in rows
        ])

    def post_trigger_ingest(self) -> Response:
        cfg = self.server.cfg
        if not cfg.admin_token:
            return json_response(503, {"error": "admin endpoint disabled: DEMO_ADMIN_TOKEN not set"})
        if not auth.is_authorized(self.headers.get("Authorization"), cfg.admin_token):
            return json_response(401, {"error": "unauthorized"}, **{"WWW-Authenticate": "Bearer"})
        job_type, error = self._requested_job_type()
        if error:
            return json_response(400, {"error": error})
        job = jobs.new_job(job_type)
        try:
            jobs.enqueue(self.server.redis, cfg.keys, job)
        except (redis.RedisError, OSError) as exc:
            return json_response(503, {"error": f"queue unavailable: {clients.short_error(exc)}"})
        log.info("enqueued job %s type=%s queue=%s", job.id, job.type, cfg.queue)
        return json_response(202, {"job_id": job.id, "type": job.type, "queue": cfg.queue})

    def _requested_job_type(self) -> tuple[str, str | None]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return "", "bad Content-Length"
        if length <= 0:
            return "ingest", None
        if length > MAX_BODY:
            return "", "body too large"
        try:
            data = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return "", "body must be JSON"
        job_type = data.get("type", "ingest") if isinstance(data, dict) else None
        if job_type not in jobs.JOB_TYPES:
            return "", f"type must be one of {sorted(jobs.JOB_TYPES)}"
        return job_type, None

    ROUTES: ClassVar[dict[str, dict[str, Route]]] = {
        "/api/health": {"GET": get_health},
        "/metrics": {"GET": get_metrics},
        "/api/feature-flags": {"GET": get_feature_flags},
        "/api/admin/trigger-ingest": {"POST": post_trigger_ingest},
    }

    # -- plumbing -----------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        raw_path = urlsplit(self.path).path
        path = canonical_path(raw_path)
        methods = self.ROUTES.get(path)
        if methods is None:
            response = json_response(404, {"error": "not found"})
        elif method not in methods:
            response = json_response(405, {"error": "method not allowed"}, Allow=", ".join(methods))
        else:
            try:
                response = methods[method](self)
            except Exception:  # keep serving; the traceback goes to the log
                log.exception("unhandled error on %s %s", method, path)
                response = json_response(500, {"error": "internal error"})
        self._send(response)
        # Unknown paths share one label so scanners can't blow up cardinality.
        self.server.requests.inc(path if methods is not None else "other", response.code)
        # One line per request; never headers (they carry the admin token).
        log.info('%s "%s %s" %d %.1fms', self.client_address[0], method,
                 _printable(raw_path), response.code, (time.monotonic() - started) * 1000)

    def _send(self, response: Response) -> None:
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # _dispatch logs its own line, with timing

    def log_message(self, fmt: str, *args: Any) -> None:
        # Only reached for protocol errors (bad request line, etc.).
        log.warning("%s %s", self.client_address[0], _printable(fmt % args))


def _printable(text: str, limit: int = 200) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def main() -> int:
    logs.setup("server")
    try:
        cfg = from_env(os.environ)
    except ConfigError as exc:
        log.error("configuration: %s", exc)
        return 2
    if not cfg.admin_token:
        log.warning("DEMO_ADMIN_TOKEN is not set: the admin endpoint answers 503")
    try:
        server = DemoServer(cfg)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", cfg.http_host, cfg.http_port, exc)
        return 1

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # serve_forever runs in a thread because shutdown() must be called from a
    # different thread than the one serving.
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5})
    serving.start()
    log.info("listening on %s:%d version=%s queue=%s",
             cfg.http_host, server.server_address[1], cfg.version, cfg.queue)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    serving.join()
    server.server_close()  # waits for in-flight requests
    server.redis.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
