# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure-logic tests of the demo app: no PostgreSQL, no Redis, no sockets."""
from __future__ import annotations

import json
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "sandbox"))

import demo_app  # noqa: E402
from demo_app import auth, clients, config, health, jobs, metrics, schema, seed, tasks  # noqa: E402
from demo_app.probes import DatabaseProbe, RedisProbe  # noqa: E402
from demo_app.server import canonical_path  # noqa: E402
from demo_app.worker import Backoff  # noqa: E402

BASE_ENV = {"DEMO_PG_DSN": "host=127.0.0.1 dbname=demo", "DEMO_REDIS_URL": "redis://127.0.0.1:6379/0"}
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


# -- config ------------------------------------------------------------------------


def test_defaults() -> None:
    cfg = config.from_env(BASE_ENV)
    assert (cfg.http_host, cfg.http_port, cfg.queue, cfg.stale_hours, cfg.version, cfg.admin_token) == (
        "127.0.0.1", 8080, "ingest", 6.0, "1.0.0", "")
    assert cfg.stale_seconds == 6 * 3600


def test_overrides() -> None:
    cfg = config.from_env({
        **BASE_ENV, "DEMO_HTTP_HOST": "::1", "DEMO_HTTP_PORT": "9000", "DEMO_QUEUE": "emails",
        "DEMO_INGEST_STALE_HOURS": "0.5", "DEMO_VERSION": "2.1.0", "DEMO_ADMIN_TOKEN": " tok ",
    })
    assert (cfg.http_host, cfg.http_port, cfg.queue, cfg.stale_hours, cfg.version, cfg.admin_token) == (
        "::1", 9000, "emails", 0.5, "2.1.0", "tok")
    assert cfg.keys.waiting == "demo:queue:emails:waiting"


@pytest.mark.parametrize("name", ["DEMO_HTTP_PORT", "DEMO_QUEUE", "DEMO_INGEST_STALE_HOURS", "DEMO_VERSION"])
def test_blank_values_fall_back_to_defaults(name: str) -> None:
    assert config.from_env({**BASE_ENV, name: "  "}) == config.from_env(BASE_ENV)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"DEMO_PG_DSN": ""}, "DEMO_PG_DSN is required"),
    ({"DEMO_REDIS_URL": " "}, "DEMO_REDIS_URL is required"),
    ({"DEMO_REDIS_URL": "http://127.0.0.1:6379"}, "DEMO_REDIS_URL must start with"),
    ({"DEMO_HTTP_PORT": "http"}, "must be an integer"),
    ({"DEMO_HTTP_PORT": "0"}, "1..65535"),
    ({"DEMO_HTTP_PORT": "65536"}, "1..65535"),
    ({"DEMO_INGEST_STALE_HOURS": "soon"}, "must be a number"),
    ({"DEMO_INGEST_STALE_HOURS": "0"}, "DEMO_INGEST_STALE_HOURS must be in"),
    ({"DEMO_INGEST_STALE_HOURS": "-2"}, "DEMO_INGEST_STALE_HOURS must be in"),
    ({"DEMO_INGEST_STALE_HOURS": "nan"}, "DEMO_INGEST_STALE_HOURS must be in"),
    ({"DEMO_INGEST_STALE_HOURS": "inf"}, "DEMO_INGEST_STALE_HOURS must be in"),
    ({"DEMO_QUEUE": "a:b"}, "DEMO_QUEUE must match"),
    ({"DEMO_QUEUE": "with space"}, "DEMO_QUEUE must match"),
])
def test_invalid_env_is_rejected(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.from_env({**BASE_ENV, **overrides})


def test_redis_url_error_does_not_echo_password() -> None:
    with pytest.raises(config.ConfigError) as info:
        config.from_env({**BASE_ENV, "DEMO_REDIS_URL": "http://:hunter2@127.0.0.1/0"})
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(("redis_url", "expected"), [("", ""), ("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0")])
def test_migrate_does_not_need_redis(redis_url: str, expected: str) -> None:
    cfg = config.from_env({"DEMO_PG_DSN": "dbname=demo", "DEMO_REDIS_URL": redis_url}, need_redis=False)
    assert cfg.redis_url == expected


def test_repr_hides_secrets() -> None:
    cfg = config.from_env({
        "DEMO_PG_DSN": "postgresql://demo:pgsecret@127.0.0.1/demo",
        "DEMO_REDIS_URL": "redis://:redissecret@127.0.0.1:6379/0",
        "DEMO_ADMIN_TOKEN": "tokensecret",
    })
    assert all(secret not in repr(cfg) for secret in ("pgsecret", "redissecret", "tokensecret"))


@pytest.mark.parametrize(("queue", "suffix"), [("ingest", "waiting"), ("ingest", "active"),
                                               ("ingest", "failed"), ("emails", "processed")])
def test_queue_keys(queue: str, suffix: str) -> None:
    assert getattr(config.queue_keys(queue), suffix) == f"demo:queue:{queue}:{suffix}"


def test_worker_heartbeat_keys_share_a_scannable_prefix() -> None:
    keys = config.queue_keys("ingest")
    assert keys.worker("app1-42") == "demo:queue:ingest:workers:app1-42"
    assert keys.worker("app1-42").startswith(keys.workers)


def test_default_version_is_the_package_version() -> None:
    assert config.from_env(BASE_ENV).version == demo_app.__version__ == "1.0.0"


# -- auth --------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer abc", "abc"),
    ("bearer abc", "abc"),
    ("BEARER   abc  ", "abc"),
    ("Basic abc", None),
    ("Bearer", None),
    ("Bearer ", None),
    ("abc", None),
    ("", None),
    (None, None),
])
def test_bearer_token_parsing(header: str | None, token: str | None) -> None:
    assert auth.bearer_token(header) == token


@pytest.mark.parametrize(("header", "expected", "ok"), [
    ("Bearer s3cret", "s3cret", True),
    ("Bearer s3cret", "S3cret", False),
    ("Bearer s3cre", "s3cret", False),
    ("Bearer s3crett", "s3cret", False),
    (None, "s3cret", False),
    ("Bearer ", "", False),   # unset token never authorizes
    ("Bearer x", "", False),
    ("Bearer jeton-é", "jeton-é", True),  # non-ASCII must not raise
    ("Bearer jeton-é", "jeton-e", False),
])
def test_is_authorized(header: str | None, expected: str, ok: bool) -> None:
    assert auth.is_authorized(header, expected) is ok


# -- jobs --------------------------------------------------------------------------


def test_job_roundtrip_and_stable_encoding() -> None:
    job = jobs.new_job("ingest")
    assert jobs.decode(jobs.encode(job)) == job
    assert jobs.encode(job) == jobs.encode(jobs.decode(jobs.encode(job)))
    assert set(json.loads(jobs.encode(job))) == {"id", "type", "enqueued_at", "attempts"}
    assert datetime.fromisoformat(job.enqueued_at).tzinfo is not None


def test_failed_entry_decodes_back_to_job() -> None:
    job = jobs.Job(id="j1", type="fail", enqueued_at="2025-01-01T00:00:00+00:00", attempts=2)
    assert jobs.decode(jobs.encode(job, error="boom", failed_at="x")) == job


@pytest.mark.parametrize("raw", [
    "not json", "[1, 2]", "{}", '{"id": "x", "type": "ingest"}',
    '{"id": "x", "type": "ingest", "enqueued_at": "t", "attempts": "many"}',
])
def test_decode_rejects_bad_entries(raw: str) -> None:
    with pytest.raises(jobs.JobDecodeError):
        jobs.decode(raw)


def test_new_job_rejects_unknown_type() -> None:
    with pytest.raises(ValueError, match="unknown job type"):
        jobs.new_job("reindex")


def test_new_jobs_get_distinct_ids() -> None:
    assert len({jobs.new_job("ingest").id for _ in range(50)}) == 50


@pytest.mark.parametrize(("job_type", "message"), [("fail", "always fails"), ("reindex", "unknown job type")])
def test_tasks_that_fail_without_touching_the_database(job_type: str, message: str) -> None:
    cfg = config.from_env(BASE_ENV)
    with pytest.raises(tasks.JobError, match=message):
        tasks.run(cfg, jobs.Job(id="j", type=job_type, enqueued_at="t"))


# -- health ------------------------------------------------------------------------

STALE = 6 * 3600.0
DB_OK = DatabaseProbe(last_ingest=NOW, ingest_age_seconds=60.0, tenders_total=300)
RD_OK = RedisProbe(waiting=2, active=0, failed=1, processed=7)


@pytest.mark.parametrize(("db", "rd", "code", "status", "reason"), [
    (DB_OK, RD_OK, 200, "ok", None),
    (DatabaseProbe(last_ingest=NOW, ingest_age_seconds=STALE), RD_OK, 200, "ok", None),
    (DatabaseProbe(last_ingest=NOW, ingest_age_seconds=STALE + 1), RD_OK, 503, "degraded", "ingest stale"),
    (DatabaseProbe(), RD_OK, 503, "degraded", "no successful ingest"),
    (DB_OK, RedisProbe(error="Connection refused"), 503, "degraded", "redis unavailable"),
    (DatabaseProbe(error="Connection refused"), RD_OK, 503, "down", "database unavailable"),
    (DatabaseProbe(error="x"), RedisProbe(error="y"), 503, "down", "redis unavailable"),
])
def test_health_verdict(
    db: DatabaseProbe, rd: RedisProbe, code: int, status: str, reason: str | None
) -> None:
    got_code, body = health.evaluate(db, rd, STALE, "1.2.3")
    assert (got_code, body["status"]) == (code, status)
    if reason is None:
        assert body["reasons"] == []
    else:
        assert any(reason in r for r in body["reasons"])


def test_health_body_fields() -> None:
    cet = timezone(timedelta(hours=1))
    db = DatabaseProbe(last_ingest=datetime(2025, 3, 1, 13, 0, tzinfo=cet), ingest_age_seconds=90.7)
    _, body = health.evaluate(db, RedisProbe(error="Error 111 connecting"), STALE, "1.2.3")
    assert body == {
        "status": "degraded",
        "database": "ok",
        "redis": "error: Error 111 connecting",
        "last_ingest_time": "2025-03-01T12:00:00+00:00",
        "ingest_age_seconds": 90,
        "queue_waiting": None,
        "version": "1.2.3",
        "reasons": ["redis unavailable"],
    }
    json.dumps(body)  # must be serialisable as is


def test_health_with_database_down_reports_nulls() -> None:
    _, body = health.evaluate(DatabaseProbe(error="refused"), RD_OK, STALE, "v")
    assert body["database"] == "error: refused"
    assert body["last_ingest_time"] is None and body["ingest_age_seconds"] is None
    assert body["queue_waiting"] == 2


# -- metrics -----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "text"), [
    (3, "3"), (3.0, "3"), (0.25, "0.25"), (-1, "-1"), (1795805824.836567, "1795805824.836567"),
    (float("nan"), "NaN"), (float("inf"), "+Inf"), (float("-inf"), "-Inf"),
])
def test_value_formatting(value: float, text: str) -> None:
    out = metrics.render([metrics.Metric("m", "gauge", "h", [metrics.Sample(value)])])
    assert out.splitlines()[-1] == f"m {text}"


def test_render_exposition_format() -> None:
    out = metrics.render([
        metrics.Metric("demo_x_total", "counter", "Line one\nback\\slash", [
            metrics.Sample(2, {"path": '/a"b', "code": "200"}),
            metrics.Sample(1, {"path": "c\\d\ne"}),
        ]),
        metrics.Metric("demo_empty", "gauge", "No samples.", []),
    ])
    assert out == (
        "# HELP demo_x_total Line one\\nback\\\\slash\n"
        "# TYPE demo_x_total counter\n"
        'demo_x_total{code="200",path="/a\\"b"} 2\n'
        'demo_x_total{path="c\\\\d\\ne"} 1\n'
        "# HELP demo_empty No samples.\n"
        "# TYPE demo_empty gauge\n"
    )


def test_build_with_everything_up() -> None:
    requests = {("/api/health", 200): 3, ("other", 404): 1}
    text = metrics.render(metrics.build(requests, DB_OK, RD_OK, "1.2.3", "ingest"))
    for line in [
        'demo_http_requests_total{code="200",path="/api/health"} 3',
        'demo_http_requests_total{code="404",path="other"} 1',
        "demo_up 1", 'demo_build_info{version="1.2.3"} 1',
        "demo_database_up 1", "demo_redis_up 1", "demo_tenders_total 300",
        f"demo_last_ingest_timestamp_seconds {int(NOW.timestamp())}",
        'demo_queue_waiting{queue="ingest"} 2', 'demo_queue_failed{queue="ingest"} 1',
        'demo_queue_processed_total{queue="ingest"} 7',
    ]:
        assert line in text.splitlines()
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(names) == len(set(names))
    assert all(f"# HELP {n} " in text for n in names)


def test_build_omits_unknown_values_when_dependencies_are_down() -> None:
    text = metrics.render(metrics.build({}, DatabaseProbe(error="x"), RedisProbe(error="y"), "v", "ingest"))
    lines = text.splitlines()
    assert "demo_database_up 0" in lines and "demo_redis_up 0" in lines and "demo_up 1" in lines
    samples = [line for line in lines if not line.startswith("#")]
    unknown = ("demo_tenders_total", "demo_queue_", "demo_last_ingest")
    assert not any(line.startswith(unknown) for line in samples)


def test_request_counter_is_thread_safe() -> None:
    counter = metrics.RequestCounter()

    def hammer() -> None:
        for _ in range(1000):
            counter.inc("/api/health", 200)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counter.inc("/metrics", 200)
    assert counter.snapshot() == {("/api/health", 200): 8000, ("/metrics", 200): 1}


# -- server helpers, worker backoff, errors ---------------------------------------------


@pytest.mark.parametrize(("path", "expected"), [
    ("/api/v1/health", "/api/health"),
    ("/api/v1/admin/trigger-ingest", "/api/admin/trigger-ingest"),
    ("/api/health", "/api/health"),
    ("/metrics", "/metrics"),
    ("/api/v1", "/api/v1"),
])
def test_canonical_path(path: str, expected: str) -> None:
    assert canonical_path(path) == expected


def test_backoff_doubles_up_to_cap_and_resets() -> None:
    backoff = Backoff(0.5, 4)
    assert not backoff.failing
    assert [backoff.next() for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    assert backoff.failing
    backoff.reset()
    assert backoff.next() == 0.5


@pytest.mark.parametrize(("message", "expected"), [
    ("connection failed: refused\n\tIs the server running?", "connection failed: refused"),
    ("", "RuntimeError"),
    ("x" * 500, "x" * 157 + "..."),
])
def test_short_error(message: str, expected: str) -> None:
    assert clients.short_error(RuntimeError(message)) == expected


# -- seed data and schema ----------------------------------------------------------------


def test_seed_is_deterministic_and_plausible() -> None:
    tenders = seed.seed_tenders(NOW)
    assert tenders == seed.seed_tenders(NOW)
    assert len(tenders) == seed.SEED_TENDERS >= 200
    assert len({t.reference for t in tenders}) == len(tenders)
    assert all(NOW - timedelta(days=31) < t.created_at < NOW for t in tenders)
    assert all(t.deadline > t.publication_date and len(t.country) == 2 for t in tenders)


def test_ingest_references_are_unique_per_job() -> None:
    first = seed.ingest_tenders(NOW, "a" * 32, 5)
    second = seed.ingest_tenders(NOW, "b" * 32, 5)
    refs = {t.reference for t in first + second}
    assert len(refs) == 10
    assert not refs & {t.reference for t in seed.seed_tenders(NOW)}


def test_seed_events_and_ingest_runs() -> None:
    events = seed.seed_events(NOW)
    assert len(events) == seed.SEED_EVENTS
    assert all(json.loads(e.payload) for e in events)
    assert len({e.user_id for e in events}) <= seed.SEED_USERS
    runs = seed.seed_ingest_runs(NOW)
    assert runs[-1].finished_at == NOW and all(r.status == "success" for r in runs)


@pytest.mark.parametrize("flag", ["new_search", "email_alerts"])
def test_runbook_feature_flags_are_seeded(flag: str) -> None:
    assert flag in {f.name for f in seed.FEATURE_FLAGS}


def test_feature_flag_values_are_valid() -> None:
    assert all(0 <= f.rollout_percentage <= 100 for f in seed.FEATURE_FLAGS)
    assert any(f.kill_switch for f in seed.FEATURE_FLAGS)


@pytest.mark.parametrize("statement", schema.DDL)
def test_ddl_is_idempotent(statement: str) -> None:
    assert "IF NOT EXISTS" in statement


def test_schema_creates_every_table() -> None:
    ddl = "\n".join(schema.DDL)
    assert all(f"CREATE TABLE IF NOT EXISTS {table} " in ddl for table in schema.TABLES)
    assert len(schema.REVISION) <= 32  # alembic_version.version_num is varchar(32)
