# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/backup.yml's upload: a manifest.json reaches the bucket only after the whole backup, verified.

Against the sandbox PostgreSQL and its S3 server, in a database of our own (backup_up_test_<token>), a
backup_dir of our own (tmp_path) and under a key prefix of our own (uptest-<token>/<test>), all removed
afterwards. A failed upload is a real one: a proxy in front of the real S3 server answers 500 to the PUTs of
one data file, and the bucket is read back through boto3.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import re
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import Target
from tests.integration.test_backup import (HOST, Bucket, backup_vars, failures, manifest_of, one_backup, report, run,
                                           tree)
from tests.lib import pg_fixtures

pytestmark = pytest.mark.sandbox

TOKEN = secrets.token_hex(3)
DB = f"backup_up_test_{TOKEN}"
# $HOME is set everywhere: Ansible's expandvars would really change a path holding this name
DOLLAR_DB = f"backup_up_test_{TOKEN}_$HOME"
PREFIX = f"uptest-{TOKEN}"
TABLES_SQL = [
    "CREATE TABLE public.orders (id int PRIMARY KEY, total numeric NOT NULL)",
    "INSERT INTO public.orders SELECT g, g * 1.5 FROM generate_series(1, 500) g",
    "CREATE TABLE public.items (id int PRIMARY KEY)",
    "INSERT INTO public.items SELECT generate_series(1, 50)",
]
# a table's data file in a directory-format backup (toc.dat is not one)
DATA_FILE = re.compile(r"/\d+\.dat(\.[a-z0-9]+)?$")
HOP_BY_HOP = {"connection", "keep-alive", "expect", "proxy-connection", "upgrade"}


@pytest.fixture(scope="module")
def inventory_s3(sandbox: Target) -> dict[str, str]:
    return yaml.safe_load((sandbox.inventory / "hosts.yml").read_text())["all"]["vars"]


@pytest.fixture(scope="module")
def db(sandbox: Target) -> Iterator[Target]:
    pg_fixtures.recreate(sandbox, DB, TABLES_SQL)
    pg_fixtures.recreate(sandbox, DOLLAR_DB, TABLES_SQL)
    yield sandbox
    pg_fixtures.drop(sandbox, DB)
    pg_fixtures.drop(sandbox, DOLLAR_DB)


@pytest.fixture(scope="module")
def bucket(inventory_s3: dict[str, str]) -> Iterator[Bucket]:
    """The inventory's bucket, with the inventory's credentials; our prefix is emptied afterwards."""
    found = Bucket.of_inventory(inventory_s3)
    yield found
    found.empty(PREFIX)


# --- the fault: a proxy that fails the PUTs of one data file ---------------------------------------------------

class FailingProxy(ThreadingHTTPServer):
    """Forwards every request to the real S3 server, except the PUTs of the first data file it sees: 500."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.lock = threading.Lock()
        self.failed_path: str | None = None  # /<bucket>/<key>, path-style
        self.refused = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def refuses(self, method: str, path: str) -> bool:
        with self.lock:
            if method == "PUT" and DATA_FILE.search(path) and self.failed_path in (None, path):
                self.failed_path = path
                self.refused += 1
                return True
            return False


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue answered before the body is read
    server: FailingProxy

    def log_message(self, *_args: object) -> None:
        pass

    def _body(self) -> bytes:
        """The request body as sent (a chunked one is forwarded chunked, as is)."""
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        raw = b""
        while True:
            line = self.rfile.readline()
            raw += line
            if int(line.split(b";")[0], 16) == 0:
                break
            raw += self.rfile.read(int(line.split(b";")[0], 16) + 2)
        while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):  # trailers
            raw += line
        return raw + line

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self) -> None:
        body = self._body()
        if self.server.refuses(self.command, urlsplit(self.path).path):
            error = b"<Error><Code>InjectedFault</Code><Message>injected by the test</Message></Error>"
            self._answer(500, [("Content-Type", "application/xml"), ("Content-Length", str(len(error)))], error)
            return
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body,
                             headers={k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP})
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"transfer-encoding"}]
        if self.command != "HEAD":  # a HEAD keeps the object's Content-Length
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(data))))
        self._answer(response.status, headers, data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward


@pytest.fixture
def failing_s3(inventory_s3: dict[str, str]) -> Iterator[FailingProxy]:
    proxy = FailingProxy(inventory_s3["runbook_s3_endpoint_url"])
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()
    thread.join(timeout=10)


# --- the tests ---------------------------------------------------------------------------------------------

def test_failed_upload_of_a_data_file_puts_no_manifest_and_a_rerun_completes_it(
        db: Target, bucket: Bucket, failing_s3: FailingProxy, tmp_path: Path) -> None:
    prefix = f"{PREFIX}/failed-put"
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    extravars = backup_vars(backup_dir, prefix, DB, backup_format="directory", backup_reuse_within="1h",
                            backup_retention=False)

    done = run("backup.yml", db, {**extravars, "runbook_s3_endpoint_url": failing_s3.url})
    assert done.rc != 0, done.stdout[-3000:]
    assert failing_s3.refused > 0 and failing_s3.failed_path, "the proxy saw no PUT of a data file"
    backup_id = one_backup(backup_dir, DB)
    manifest = manifest_of(backup_dir, DB, backup_id)
    files = [f["path"] for f in manifest["files"]]
    assert "dump/toc.dat" in files and len([f for f in files if DATA_FILE.search("/" + f)]) >= 2, files
    base = f"{prefix}/{DB}/{backup_id}"
    failed_file = failing_s3.failed_path.split(f"/{base}/", 1)[1]
    assert failed_file in files, failing_s3.failed_path
    # the other files went up (the loop goes on past a failed item), but no manifest.json: no complete backup
    keys = bucket.keys(prefix)
    assert f"{base}/{failed_file}" not in keys and f"{base}/dump/toc.dat" in keys, keys
    assert f"{base}/manifest.json" not in keys, keys
    failed = failures(done)
    assert len(failed) == 1 and failed[0]["task"].startswith("Upload | put the data files"), failed

    again = run("backup.yml", db, extravars)
    assert again.rc == 0, again.stdout[-3000:]
    assert report(again)[0].startswith(f"{DB}: reused verified backup {backup_id} of "), report(again)
    assert bucket.keys(prefix) == sorted(f"{base}/{name}" for name in files + ["manifest.json"])
    for entry in manifest["files"]:
        assert hashlib.sha256(bucket.read(f"{base}/{entry['path']}")).hexdigest() == entry["sha256"]
    assert json.loads(bucket.read(f"{base}/manifest.json")) == manifest


SKIP_VERIFY = {
    "skip_tags_backup_verify": {"envvars": {"ANSIBLE_SKIP_TAGS": "backup_verify"}},
    "tags_dump_and_upload": {"tags": "backup_dump,backup_upload"},
}


@pytest.mark.parametrize("how", list(SKIP_VERIFY))
def test_a_backup_not_verified_in_the_run_is_not_uploaded(how: str, db: Target, bucket: Bucket,
                                                          tmp_path: Path) -> None:
    prefix = f"{PREFIX}/unverified-{how}"
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    extravars = backup_vars(backup_dir, prefix, DB)

    planned = run("backup.yml", db, extravars, check=True, **SKIP_VERIFY[how])
    assert planned.rc == 0, planned.stdout[-3000:]
    line = report(planned)[0]
    assert line.startswith(f"{DB}: would back up into {backup_dir}/{DB}/"), line
    assert ", NOT verified (backup_verify skipped), so not uploaded: " in line and "s3://" not in line, line

    done = run("backup.yml", db, extravars, **SKIP_VERIFY[how])
    assert done.rc == 0, done.stdout[-3000:]
    backup_id = one_backup(backup_dir, DB)
    assert manifest_of(backup_dir, DB, backup_id)["verified_at"] is None
    assert bucket.keys(prefix) == []
    line = report(done)[0]
    assert line.startswith(f"{DB}: backup {backup_id} in "), line
    assert line.endswith(", NOT verified (backup_verify skipped), so not uploaded"), line
    assert ", verified" not in line and "uploaded to" not in line, line


def test_check_mode_says_where_it_would_upload(db: Target, bucket: Bucket, tmp_path: Path) -> None:
    prefix = f"{PREFIX}/check"
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    done = run("backup.yml", db, backup_vars(backup_dir, prefix, DB), check=True)
    assert done.rc == 0, done.stdout[-3000:]
    line = report(done)[0]
    start = f"{DB}: would back up into {backup_dir}/{DB}/"
    assert line.startswith(start), line
    backup_id = line[len(start):].split(" ", 1)[0]
    assert f"), then verify it and upload it to s3://{bucket.name}/{prefix}/{DB}/{backup_id}: " in line, line
    assert tree(backup_dir) == [] and bucket.keys(prefix) == []


def test_a_database_name_with_a_dollar_is_refused_before_anything_runs(db: Target, bucket: Bucket,
                                                                       tmp_path: Path) -> None:
    prefix = f"{PREFIX}/dollar"
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    done = run("backup.yml", db, backup_vars(backup_dir, prefix, DOLLAR_DB))
    assert done.rc != 0 and done.stats[HOST]["failures"] == 1, done.stdout[-3000:]
    failed = failures(done)
    assert len(failed) == 1 and failed[0]["task"].startswith("Guards |"), failed
    assert (f'a $ in the database name "{DOLLAR_DB}": Ansible expands $ in file paths, so its backups could not '
            "be uploaded or pruned") in failed[0]["msg"], failed[0]["msg"]
    assert not done.host_results(HOST, "Dump |") and not done.host_results(HOST, "Report |")
    assert tree(backup_dir) == [] and bucket.keys(prefix) == []
