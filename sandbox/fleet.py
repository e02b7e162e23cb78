#!/usr/bin/env python3
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet: production-shaped test hosts for runbook.ops.

Podman containers running systemd + sshd, built from a Debian bookworm rootfs made
locally with debootstrap (no registry needed). Each host runs its role's services as
real systemd units and is reached over ssh on a port published on 127.0.0.1 only.
Beside them, an S3-compatible server for the backups (moto, see "S3" below).

    python sandbox/fleet.py up [--hosts N]    # idempotent; writes inventories/fleet/
    python sandbox/fleet.py status
    python sandbox/fleet.py down              # removes only what `up` created

State (image cache, keys, CA, secrets, ports, logs, the S3 server's pidfile) lives in .fleet/.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import functools
import hashlib
import http.client
import io
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import string
import struct
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE_DIR = ROOT / "sandbox" / "fleet"
IMAGE_RECIPE = RECIPE_DIR / "image"
TEMPLATES = RECIPE_DIR / "templates"
DEMO_APP_SRC = ROOT / "sandbox" / "demo_app"
STATE_DIR = ROOT / ".fleet"
INVENTORY_DIR = ROOT / "inventories" / "fleet"

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
IMAGE_REPO = "localhost/runbook-fleet"
LABEL = "io.runbook.fleet"
# Marks what this checkout created, so `down` never touches another checkout's
# fleet; in the names too, so that two checkouts (a fresh clone beside a work
# tree, CI beside a stale fleet) never collide.
PROJECT_ID = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
NETWORK = f"runbook-fleet-{PROJECT_ID[:6]}"
CONTAINER_PREFIX = f"runbook-fleet-{PROJECT_ID[:6]}-"
APP_PORT = 8080
# On every PostgreSQL host (provision.sh makes the directory, mode 0700: the backup role never
# creates it, so that an unmounted backup volume is an error, not a backup on the root disk).
PG_BINDIR = "/usr/lib/postgresql/15/bin"
BACKUP_DIR = "/var/backups/postgresql"
CA_ON_HOST = "/usr/local/share/ca-certificates/runbook-fleet-ca.crt"
PROVISION_ON_HOST = "/usr/local/lib/runbook-fleet/provision.sh"
# Settings podman needs on these machines: crun fails on hybrid cgroups; systemd wants ulimits.
CONTAINERS_CONF = """\
# Written by sandbox/fleet.py: podman settings for the runbook fleet.
[containers]
default_ulimits=["nofile=20000:20000","nproc=4096:4096"]
[engine]
runtime="runc"
"""
CONTROLLER_PACKAGES = ["podman", "runc", "netavark", "aardvark-dns", "iptables", "debootstrap", "uidmap",
                       "openssl", "openssh-client", "tar"]
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
# Units that prove a role is up (checked by `status`, the idempotence check and the test).
ROLE_UNITS = {
    "postgres": ["postgresql@15-main.service"],
    "redis": ["redis-server.service"],
    "app": ["demo-app.service", "demo-worker@1.service"],
    "web": ["nginx.service"],
}


class FleetError(RuntimeError):
    """One clear message for the operator; main() prints it and exits 1."""


def log(msg: str) -> None:
    print(f"fleet: {msg}", flush=True)


# --- hosts -----------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    name: str
    roles: tuple[str, ...]
    groups: tuple[str, ...]

    @property
    def container(self) -> str:
        return CONTAINER_PREFIX + self.name

    @property
    def units(self) -> list[str]:
        units = ["ssh.service"]
        for role in self.roles:
            units += ROLE_UNITS[role] if role != "app" or demo_app_present() else []
        return units


MIN_HOSTS = 5


def plan_hosts(count: int) -> list[Host]:
    """db1, cache1, web1, app1, db2; hosts past five are more app hosts (app2, ...).

    db2 is a second PostgreSQL server for cross-host restore drills (a backup taken on db1,
    drilled on db2 from the bucket). It is in the group drill only, not in postgres, so that
    every play on the postgres group still runs on db1 alone. It comes last: the app hosts'
    database is the first host with the postgres role (first_with)."""
    if count < MIN_HOSTS:
        raise FleetError(f"--hosts must be at least {MIN_HOSTS} (db1, cache1, web1, app1, db2)")
    hosts = [
        Host("db1", ("postgres",), ("postgres",)),
        Host("cache1", ("redis",), ("redis",)),
        Host("web1", ("web",), ("web",)),
        Host("app1", ("app",), ("app", "workers")),
    ]
    hosts += [Host(f"app{i}", ("app",), ("app", "workers")) for i in range(2, count - MIN_HOSTS + 2)]
    hosts.append(Host("db2", ("postgres",), ("drill",)))
    return hosts


def provision_stages(hosts: list[Host]) -> list[list[Host]]:
    """Data stores and the proxy (it resolves app names per request) first, then the apps:
    the first alone, since concurrent migrations could race."""
    first = [h for h in hosts if set(h.roles) & {"postgres", "redis", "web"}]
    apps = [h for h in hosts if "app" in h.roles]
    return [first, apps[:1], apps[1:]]


def demo_app_present() -> bool:
    return (DEMO_APP_SRC / "__init__.py").is_file()


# --- processes -------------------------------------------------------------


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(STATE_DIR / "containers.conf")}


def run(argv: list[str], *, env: dict[str, str] | None = None, input_bytes: bytes | None = None,
        check: bool = True, timeout: float | None = 300) -> subprocess.CompletedProcess[bytes]:
    """Run argv (never a shell string); on failure raise with the command's last words."""
    try:
        proc = subprocess.run(argv, env=env, input=input_bytes, capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise FleetError(f"{' '.join(argv[:4])} timed out after {timeout:.0f}s") from exc
    except FileNotFoundError as exc:
        raise FleetError(f"{argv[0]} not found") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()[-4:]
        raise FleetError(f"{' '.join(argv[:4])} failed (exit {proc.returncode}): {' | '.join(detail)}")
    return proc


def podman(*args: str, input_bytes: bytes | None = None, check: bool = True,
           timeout: float | None = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return run(["podman", *args], env={**podman_env(), **(env or {})}, input_bytes=input_bytes,
               check=check, timeout=timeout)


def podman_out(*args: str, check: bool = True) -> str:
    return podman(*args, check=check).stdout.decode().strip()


def parallel(func: Callable[[Host], object], hosts: list[Host]) -> list[object]:
    """Run func for every host at once; the first failure is raised."""
    if not hosts:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        return list(pool.map(func, hosts))


def sha256(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def write_private(path: Path, text: str, mode: int = 0o600) -> bool:
    """Write only when the content differs (keeps mtimes still on a no-op up)."""
    if path.exists() and path.read_text() == text:
        os.chmod(path, mode)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


@contextlib.contextmanager
def state_lock() -> Iterator[None]:
    """Two `up`s at once (e.g. parallel test sessions) must not race."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


# --- controller prerequisites ------------------------------------------------


def ensure_controller() -> None:
    if os.geteuid() != 0:
        raise FleetError("the fleet needs root (rootful podman, debootstrap, chroot)")
    missing = [p for p in CONTROLLER_PACKAGES if not dpkg_installed(p)]
    if missing:
        log(f"installing Debian packages: {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-qq"], env=env, timeout=600)
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env, timeout=900)
    write_containers_conf()


def write_containers_conf() -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    write_private(STATE_DIR / "containers.conf", CONTAINERS_CONF, 0o644)


def dpkg_installed(package: str) -> bool:
    proc = run(["dpkg-query", "-W", "-f=${Status}", package], check=False)
    return b"install ok installed" in proc.stdout


def ensure_ssh_key() -> Path:
    key = STATE_DIR / "ssh" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "runbook-fleet", "-f", str(key)])
        log(f"generated ssh key {key.relative_to(ROOT)}")
    return key


# --- TLS: a local CA and one server certificate per host ---------------------


def ensure_ca() -> Path:
    tls = STATE_DIR / "tls"
    ca_key, ca_crt = tls / "ca.key", tls / "ca.crt"
    if not ca_crt.exists():
        tls.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(ca_key), "-out", str(ca_crt), "-days", "3650",
             "-subj", "/CN=runbook fleet test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        os.chmod(ca_key, 0o600)
        log(f"generated test CA {ca_crt.relative_to(ROOT)}")
    return ca_crt


def ensure_host_cert(host: str) -> tuple[Path, Path]:
    tls = STATE_DIR / "tls"
    key, crt, csr = tls / f"{host}.key", tls / f"{host}.crt", tls / f"{host}.csr"
    if crt.exists():
        return crt, key
    sans = f"subjectAltName=DNS:{host},DNS:localhost,IP:127.0.0.1"
    run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={host}", "-addext", sans])
    os.chmod(key, 0o600)
    ext = tls / f"{host}.ext"
    ext.write_text(f"{sans}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    # a random serial of its own: hosts are provisioned in parallel, and -CAcreateserial's shared ca.srl was read
    # half-written by one host while another wrote it ("Unable to load number from ca.srl")
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(tls / "ca.crt"), "-CAkey", str(tls / "ca.key"),
         "-set_serial", str(secrets.randbits(63) | 1 << 62), "-days", "825", "-out", str(crt), "-extfile", str(ext)])
    csr.unlink()
    ext.unlink()
    return crt, key


# --- secrets -------------------------------------------------------------------


SECRET_NAMES = ("pg_admin_password", "pg_app_password", "redis_password", "app_admin_token", "s3_secret_key")


def ensure_secrets() -> dict[str, str]:
    """Random per fleet directory (delete .fleet/secrets.json for new ones). 0600, never printed.

    A secret added to the fleet later is added to an existing file; the others stay as they are."""
    path = STATE_DIR / "secrets.json"
    values: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    alphabet = string.ascii_letters + string.digits  # safe in URLs, DSNs and config files
    missing = [name for name in SECRET_NAMES if name not in values]
    for name in missing:
        values[name] = "".join(secrets.choice(alphabet) for _ in range(32))
    if missing:
        write_private(path, json.dumps(values, indent=2) + "\n")
    return values


# --- image ---------------------------------------------------------------------


def recipe_packages() -> list[str]:
    lines = (IMAGE_RECIPE / "packages.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def tree_digest(base: Path) -> list[str]:
    """(path, mode, content) of every file under base, for the recipe hash."""
    parts: list[str] = []
    for path in sorted(p for p in base.rglob("*") if p.is_file() or p.is_symlink()):
        rel = str(path.relative_to(base))
        body = os.readlink(path) if path.is_symlink() else sha256(path.read_bytes())
        parts += [rel, oct(path.lstat().st_mode & 0o777), body]
    return parts


def base_hash() -> str:
    return sha256("base-v1", SUITE, MIRROR, "minbase", *recipe_packages())[:12]


def image_hash() -> str:
    return sha256(base_hash(), *tree_digest(IMAGE_RECIPE / "rootfs"),
                  (IMAGE_RECIPE / "customize.sh").read_bytes())[:12]


def ensure_image() -> str:
    tag = f"{IMAGE_REPO}:{image_hash()}"
    if podman("image", "exists", tag, check=False).returncode == 0:
        log(f"image {tag} cached")
        return tag
    started = time.monotonic()
    base = ensure_base_rootfs()
    build = STATE_DIR / "image" / f"build-{image_hash()}"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    rootfs = build / "rootfs"
    log(f"customizing rootfs for {tag}")
    run(["cp", "-a", "--reflink=auto", str(base), str(rootfs)])
    run(["cp", "-a", f"{IMAGE_RECIPE / 'rootfs'}/.", f"{rootfs}/"])
    shutil.copy(IMAGE_RECIPE / "customize.sh", rootfs / "tmp" / "customize.sh")
    proc = run(["chroot", str(rootfs), "/bin/sh", "/tmp/customize.sh"], check=False)
    (STATE_DIR / "logs").mkdir(exist_ok=True)
    (STATE_DIR / "logs" / "customize.log").write_bytes(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise FleetError(f"image customize.sh failed; see {STATE_DIR / 'logs' / 'customize.log'}")
    (rootfs / "tmp" / "customize.sh").unlink()
    import_rootfs(rootfs, tag)
    shutil.rmtree(build)
    log(f"image {tag} built in {time.monotonic() - started:.0f}s")
    return tag


def ensure_base_rootfs() -> Path:
    """debootstrap once per package list; .debs are cached across rebuilds too."""
    images = STATE_DIR / "image"
    done = images / f"base-{base_hash()}"
    if (done / "rootfs" / "etc" / "os-release").exists():
        return done / "rootfs"
    for old in images.glob("base-*"):
        shutil.rmtree(old, ignore_errors=True)
    tmp = images / f"tmp-base-{base_hash()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    debs = STATE_DIR / "debs"
    debs.mkdir(exist_ok=True)
    logfile = STATE_DIR / "logs" / "debootstrap.log"
    logfile.parent.mkdir(exist_ok=True)
    log(f"debootstrap {SUITE} ({len(recipe_packages())} packages; takes a few minutes, log: {logfile})")
    started = time.monotonic()
    argv = ["debootstrap", "--variant=minbase", f"--cache-dir={debs}",
            f"--include={','.join(recipe_packages())}", SUITE, str(tmp / "rootfs"), MIRROR]
    with open(logfile, "wb") as out:
        rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        raise FleetError(f"debootstrap failed (exit {rc}); see {logfile}")
    tmp.rename(done)
    log(f"debootstrap done in {time.monotonic() - started:.0f}s")
    return done / "rootfs"


def import_rootfs(rootfs: Path, tag: str) -> None:
    log(f"importing {tag} into podman")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    imp = subprocess.run(["podman", "import", "--change", "CMD=/sbin/init", "-", tag], stdin=tar.stdout,
                         env=podman_env(), capture_output=True, check=False)
    assert tar.stdout is not None
    tar.stdout.close()
    if tar.wait() != 0 or imp.returncode != 0:
        raise FleetError(f"podman import failed: {imp.stderr.decode(errors='replace').strip()[-300:]}")


def prune_images(keep: str) -> None:
    """Drop older fleet images that no container uses any more (a failure just keeps them)."""
    out = podman_out("images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPO, check=False)
    for tag in out.splitlines():
        if tag != keep:
            podman("rmi", tag, check=False)


# --- network and containers ------------------------------------------------------


def ensure_network() -> str:
    """Create the fleet network once; returns its gateway, where podman's DNS answers."""
    proc = podman("network", "inspect", NETWORK, check=False)
    if proc.returncode == 0:
        labels = json.loads(proc.stdout)[0].get("labels") or {}
        if labels.get(LABEL) != PROJECT_ID:
            raise FleetError(f"podman network {NETWORK} exists but was not created by this checkout")
    else:
        podman("network", "create", "--label", f"{LABEL}={PROJECT_ID}", NETWORK)
        log(f"created network {NETWORK}")
        proc = podman("network", "inspect", NETWORK)
    net = json.loads(proc.stdout)[0]
    if not net.get("dns_enabled"):
        raise FleetError(f"podman network {NETWORK} has no DNS (is aardvark-dns installed?)")
    return net["subnets"][0]["gateway"]


def our_containers() -> dict[str, dict]:
    """Containers created by this checkout, keyed by host name."""
    out = podman_out("ps", "-a", "--filter", f"label={LABEL}={PROJECT_ID}", "--format", "json")
    found = {}
    for entry in json.loads(out or "[]"):
        host = (entry.get("Labels") or {}).get(f"{LABEL}.host")
        if host:
            found[host] = entry
    return found


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def port_free(port: int, address: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
        return True


def listening_sockets() -> set[tuple[str, int]]:
    """(IPv4 address, port) of every TCP socket listening on this machine, read from /proc: that
    sends no traffic, so `down` can check an address whose bridge is already gone."""
    found: set[tuple[str, int]] = set()
    with contextlib.suppress(OSError), open("/proc/net/tcp") as fh:
        for line in fh.readlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                address, port = fields[1].split(":")
                # the address is the kernel's 32-bit word in host byte order
                found.add((socket.inet_ntoa(struct.pack("=I", int(address, 16))), int(port, 16)))
    return found


@dataclass
class Ports:
    ssh: int
    https: int | None = None


def pick_ports(host: Host, remembered: dict, taken: set[int]) -> Ports:
    """Reuse the ports from state.json when still free, so inventories stay stable."""
    def pick(key: str) -> int:
        port = remembered.get(key)
        while not port or port in taken or not port_free(port):
            port = free_port()
        taken.add(port)
        return port
    return Ports(ssh=pick("ssh_port"), https=pick("https_port") if "web" in host.roles else None)


def published_ports(entry: dict) -> Ports:
    ports = {p["container_port"]: p["host_port"] for p in entry.get("Ports") or []}
    return Ports(ssh=ports[22], https=ports.get(443))


def container_spec(host: Host, image: str) -> str:
    return sha256("spec-v1", image, host.name, *host.roles)[:12]


def run_container(host: Host, image: str, ports: Ports) -> None:
    if podman("container", "exists", host.container, check=False).returncode == 0:
        raise FleetError(f"container {host.container} exists but was not created by this checkout")
    publish = ["-p", f"127.0.0.1:{ports.ssh}:22"]
    if ports.https:
        publish += ["-p", f"127.0.0.1:{ports.https}:443"]
    podman("run", "-d", "--name", host.container, "--hostname", host.name,
           "--network", NETWORK, "--network-alias", host.name,
           "--label", f"{LABEL}={PROJECT_ID}", "--label", f"{LABEL}.host={host.name}",
           "--label", f"{LABEL}.spec={container_spec(host, image)}",
           *publish, "--systemd=always", image, "/sbin/init")


def remove_unplanned(hosts: list[Host], state: dict) -> None:
    """A smaller --hosts than last time: drop the extra hosts."""
    planned = {h.name for h in hosts}
    for name, entry in our_containers().items():
        if name not in planned:
            podman("rm", "-f", "-t", "2", entry["Id"])
            state["hosts"].pop(name, None)
            log(f"{name}: not in the plan any more, removed")


def ensure_containers(hosts: list[Host], image: str, state: dict) -> set[str]:
    """Create or start each host's container; returns the names that (re)booted."""
    existing = our_containers()
    taken: set[int] = set()
    actions: list[Callable[[], None]] = []
    for host in hosts:
        entry = existing.get(host.name)
        remembered = state["hosts"].setdefault(host.name, {})
        if entry and entry["Labels"].get(f"{LABEL}.spec") != container_spec(host, image):
            actions.append(functools.partial(recreate, host, entry, image))
            remembered.pop("provisioned", None)
        elif entry is None:
            ports = pick_ports(host, remembered, taken)  # sequential: no two hosts get one port
            actions.append(functools.partial(create, host, image, ports))
            remembered.pop("provisioned", None)
        elif entry["State"] != "running":
            actions.append(functools.partial(start, host))
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(actions))) as pool:
        list(pool.map(lambda action: action(), actions))
    state["hosts"] = {h.name: state["hosts"][h.name] for h in hosts}  # plan order for status
    current = our_containers() if actions else existing
    for host in hosts:
        ports = published_ports(current[host.name])
        state["hosts"][host.name].update(container=host.container, roles=list(host.roles),
                                         groups=list(host.groups), ssh_port=ports.ssh)
        if ports.https:
            state["hosts"][host.name]["https_port"] = ports.https
    return {h.name for h in hosts if existing.get(h.name, {}).get("Id") != current[h.name]["Id"]
            or existing[h.name]["State"] != "running"}


def create(host: Host, image: str, ports: Ports) -> None:
    run_container(host, image, ports)
    log(f"{host.name}: started (ssh 127.0.0.1:{ports.ssh})")


def recreate(host: Host, entry: dict, image: str) -> None:
    log(f"{host.name}: recipe changed, recreating")
    ports = published_ports(entry)
    podman("rm", "-f", "-t", "2", entry["Id"])
    create(host, image, ports)  # the ports it just released


def start(host: Host) -> None:
    podman("start", host.container)
    log(f"{host.name}: restarted stopped container")


def wait_booted(host: Host, timeout: float = 180) -> None:
    """Until systemd finished booting; right after `run` its bus may not exist yet."""
    deadline = time.monotonic() + timeout
    while True:
        proc = podman("exec", host.container, "systemctl", "is-system-running", "--wait",
                      check=False, timeout=timeout)
        status = proc.stdout.decode().strip()
        if status in ("running", "degraded"):
            return
        if time.monotonic() > deadline:
            raise FleetError(f"{host.name}: systemd did not come up "
                             f"({status or proc.stderr.decode().strip()})")
        time.sleep(0.2)


# --- provisioning --------------------------------------------------------------


@dataclass
class Context:
    hosts: list[Host]
    secrets: dict[str, str]
    ssh_pub: str
    ca_pem: bytes
    dns: str  # podman's DNS (aardvark) on the fleet network


def render(template: str, **values: object) -> bytes:
    return string.Template((TEMPLATES / template).read_text()).substitute(**values).encode()


def demo_app_files() -> dict[str, tuple[bytes, int]]:
    files = {}
    for path in sorted(DEMO_APP_SRC.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            files[f"opt/demo-app/demo_app/{path.relative_to(DEMO_APP_SRC)}"] = (path.read_bytes(), 0o644)
    return files


def demo_app_version() -> str:
    init = DEMO_APP_SRC / "__init__.py"
    found = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", init.read_text()) if init.exists() else None
    return found.group(1) if found else "1.0.0"


def host_files(host: Host, ctx: Context) -> dict[str, tuple[bytes, int]]:
    """Every file the host gets at `up`: path (relative to /) -> (content, mode)."""
    files = {
        "root/.ssh/authorized_keys": (ctx.ssh_pub.encode(), 0o600),
        PROVISION_ON_HOST.lstrip("/"): ((RECIPE_DIR / "provision.sh").read_bytes(), 0o755),
        CA_ON_HOST.lstrip("/"): (ctx.ca_pem, 0o644),
    }
    sec = ctx.secrets
    if "postgres" in host.roles:
        crt, key = ensure_host_cert(host.name)
        files["etc/postgresql/15/main/conf.d/runbook-fleet.conf"] = (render("postgresql.conf"), 0o644)
        files["etc/postgresql/15/main/tls/server.crt"] = (crt.read_bytes(), 0o644)
        files["etc/postgresql/15/main/tls/server.key"] = (key.read_bytes(), 0o600)
    if "redis" in host.roles:
        files["etc/redis/runbook-fleet.conf"] = (render("redis.conf", redis_password=sec["redis_password"]), 0o640)
    if "app" in host.roles:
        db, cache = first_with(ctx.hosts, "postgres"), first_with(ctx.hosts, "redis")
        env = render("demo-app.env", app_port=APP_PORT, admin_token=sec["app_admin_token"],
                     version=demo_app_version(),
                     pg_dsn=f"postgresql://app:{sec['pg_app_password']}@{db}:5432/app?sslmode=prefer",
                     redis_url=f"redis://:{sec['redis_password']}@{cache}:6379/0")
        files["etc/demo-app/env"] = (env, 0o600)
        if demo_app_present():
            files.update(demo_app_files())
    if "web" in host.roles:
        crt, key = ensure_host_cert(host.name)
        files["etc/nginx/sites-available/runbook-fleet"] = (
            render("nginx-site.conf", resolver=ctx.dns, splits=app_splits(ctx.hosts), app_port=APP_PORT,
                   server_names=f"{host.name} localhost"), 0o644)
        files["etc/nginx/tls/server.crt"] = (crt.read_bytes(), 0o644)
        files["etc/nginx/tls/server.key"] = (key.read_bytes(), 0o600)
    return files


def app_splits(hosts: list[Host]) -> str:
    """split_clients lines spreading requests evenly over the app hosts."""
    apps = [h.name for h in hosts if "app" in h.roles]
    share = int(10000 / len(apps)) / 100
    lines = [f"    {share:.2f}% {name};" for name in apps[:-1]] + [f"    * {apps[-1]};"]
    return "\n".join(lines)


def first_with(hosts: list[Host], role: str) -> str:
    return next(h.name for h in hosts if role in h.roles)


def provision_env(ctx: Context) -> dict[str, str]:
    """Secrets for provision.sh; podman exec -e NAME copies them from our environment."""
    return {"FLEET_PG_ADMIN_PASSWORD": ctx.secrets["pg_admin_password"],
            "FLEET_PG_APP_PASSWORD": ctx.secrets["pg_app_password"],
            "FLEET_REDIS_PASSWORD": ctx.secrets["redis_password"],
            "FLEET_APP_PORT": str(APP_PORT)}


def tar_bytes(files: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        if "root/.ssh/authorized_keys" in files:  # sshd's StrictModes wants 0700
            info = tarfile.TarInfo("root/.ssh")
            info.type, info.mode = tarfile.DIRTYPE, 0o700
            tar.addfile(info)
        for path, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def provision_hash(host: Host, files: dict[str, tuple[bytes, int]], ctx: Context) -> str:
    parts = [f"{p}:{m:o}:{sha256(d)}" for p, (d, m) in sorted(files.items())]
    return sha256("prov-v1", *host.roles, *parts, json.dumps(provision_env(ctx), sort_keys=True))[:16]


def units_active(host: Host) -> bool:
    # one state per unit: is-active's exit code is 0 when any one of them is active
    proc = podman("exec", host.container, "systemctl", "is-active", *host.units, check=False)
    return proc.stdout.decode().split() == ["active"] * len(host.units)


def provision(host: Host, ctx: Context, state: dict) -> bool:
    """Unpack the host's files and run provision.sh, unless nothing changed."""
    files = host_files(host, ctx)
    digest = provision_hash(host, files, ctx)
    hstate = state["hosts"][host.name]
    if hstate.get("provisioned") == digest and units_active(host):
        return False
    if "app" in host.roles:  # files removed from the package must go on the host too
        podman("exec", host.container, "rm", "-rf", "/opt/demo-app/demo_app")
    podman("exec", "-i", host.container, "tar", "-C", "/", "-xf", "-", input_bytes=tar_bytes(files))
    env = provision_env(ctx)
    proc = podman("exec", *[a for name in env for a in ("-e", name)], host.container,
                  "/bin/sh", PROVISION_ON_HOST, *host.roles, env=env, check=False, timeout=300)
    logfile = STATE_DIR / "logs" / f"provision-{host.name}.log"
    logfile.parent.mkdir(exist_ok=True)
    logfile.write_bytes(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).decode(errors="replace").strip().splitlines()[-3:]
        raise FleetError(f"{host.name}: provisioning failed ({' | '.join(tail)}); see {logfile}")
    hstate["provisioned"] = digest
    log(f"{host.name}: provisioned ({', '.join(host.roles)})")
    return True


# --- ssh readiness -------------------------------------------------------------


def ssh_argv(port: int, *command: str) -> list[str]:
    key = STATE_DIR / "ssh" / "id_ed25519"
    return ["ssh", *SSH_OPTIONS, "-i", str(key), "-p", str(port), "root@127.0.0.1", *command]


def wait_ssh(port: int, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if run(ssh_argv(port, "true"), check=False, timeout=15).returncode == 0:
            return
        if time.monotonic() > deadline:
            raise FleetError(f"{name}: ssh on 127.0.0.1:{port} not answering after {timeout:.0f}s")
        time.sleep(0.3)


# --- S3: the backup bucket -------------------------------------------------------
#
# The backup role uploads from the PostgreSQL hosts themselves (the amazon.aws modules run
# there, with the image's python3-boto3), so the bucket must be reachable from inside the
# fleet. The server is moto_server from the controller's .venv (the S3 server the sandbox runs
# too), listening on the gateway address of the fleet's own podman bridge only: the hosts
# reach it by their default route, the controller as the host side of that bridge, and no
# other machine at all. That is cheaper than an S3 host in the fleet (no registry image to
# build it from, no pip inside the image): a cold `up` starts it while the hosts are being
# provisioned, a warm one finds it by its pidfile. What it does not give:
# - persistence: moto keeps the bucket in memory, so a restarted server (down/up, a reboot)
#   starts with an empty bucket again. Tests make the backups they need.
# - authentication: moto takes any signature. The keys are random test secrets all the same,
#   so that the inventory has production's shape and the modules sign as they do against S3;
#   what keeps other clients out is the address.
# - TLS: plain http on the bridge, whose traffic never leaves this machine.
# The bridge exists only while a container runs on it, so the server starts after the
# containers, and nothing probes its address once they are gone (`down` reads /proc instead).
S3_BUCKET = "runbook-backups"
S3_REGION = "us-east-1"
S3_ACCESS_KEY = "runbook-fleet"
MOTO_SERVER = ROOT / ".venv" / "bin" / "moto_server"
S3_PIDFILE = STATE_DIR / "s3" / "moto.pid"
S3_LOG = STATE_DIR / "logs" / "s3.log"


@dataclass(frozen=True)
class S3Server:
    pid: int
    address: str
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://{self.address}:{self.port}"


def s3_running() -> S3Server | None:
    """Our moto_server, from the pidfile, while that pid still is one (a reused pid is not)."""
    try:
        pid = int(S3_PIDFILE.read_text().split()[0])
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        if str(MOTO_SERVER) not in argv:
            return None
        return S3Server(pid, argv[argv.index("-H") + 1], int(argv[argv.index("-p") + 1]))
    except (OSError, ValueError, IndexError):
        return None


def start_s3(address: str, state: dict) -> None:
    """Keep a server that listens on address at the remembered port; else (re)start it there.

    Returns at once: finish_s3 waits for it (moto needs about a second to import)."""
    remembered = state.setdefault("s3", {})
    current = s3_running()
    if current and (current.address, current.port) == (address, remembered.get("port")):
        return
    if current:  # the network was made anew with another subnet
        stop_s3(current)
    if not MOTO_SERVER.exists():
        raise FleetError(f"{MOTO_SERVER.relative_to(ROOT)} not found (scripts/setup.sh installs moto[server])")
    port = remembered.get("port")
    if not port or not port_free(port, address):
        port = free_port(address)
    S3_PIDFILE.parent.mkdir(parents=True, exist_ok=True)
    S3_LOG.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(S3_LOG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        # its own session: it outlives this process and a Ctrl-C of it; close_fds keeps the
        # state lock (and a caller's pipes) out of it
        proc = subprocess.Popen([str(MOTO_SERVER), "-H", address, "-p", str(port)], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, cwd="/", start_new_session=True,
                                close_fds=True)
    write_private(S3_PIDFILE, f"{proc.pid}\n", 0o644)
    remembered.update(address=address, port=port)
    log(f"s3: started moto_server on http://{address}:{port} (log: {S3_LOG.relative_to(ROOT)})")


def finish_s3(secret_key: str, timeout: float = 30) -> S3Server:
    """Wait until the server answers, then make sure the bucket exists (boto3, as a client would)."""
    deadline = time.monotonic() + timeout
    while True:
        server = s3_running()
        if server is None:
            raise FleetError(f"moto_server is not running; see {S3_LOG}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((server.address, server.port)) == 0:
                break
        if time.monotonic() > deadline:
            raise FleetError(f"moto_server (pid {server.pid}) not answering on {server.endpoint}; see {S3_LOG}")
        time.sleep(0.1)
    # A warm up asks with one plain HEAD (moto takes it unsigned; importing boto3 costs 1.5 s);
    # only a missing bucket is made, through boto3 as any client would.
    conn = http.client.HTTPConnection(server.address, server.port, timeout=10)
    try:
        conn.request("HEAD", f"/{S3_BUCKET}")
        status = conn.getresponse().status
    except OSError as exc:
        raise FleetError(f"moto_server on {server.endpoint} did not answer: {exc}; see {S3_LOG}") from exc
    finally:
        conn.close()
    if status == 200:
        return server
    try:
        import boto3  # from the .venv, like moto_server (make fleet-up and the tests run that python)
    except ImportError as exc:
        raise FleetError("boto3 is not importable: run fleet.py with .venv/bin/python") from exc
    client = boto3.client("s3", endpoint_url=server.endpoint, region_name=S3_REGION,
                          aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=secret_key)
    client.create_bucket(Bucket=S3_BUCKET)
    log(f"s3: created bucket {S3_BUCKET}")
    return server


def process_gone(pid: int) -> bool:
    """pid has exited: no /proc entry, or a zombie. Not "its cmdline is empty": an exiting
    process drops its memory (and cmdline) before it closes its sockets."""
    with contextlib.suppress(ChildProcessError):  # our own child when up restarts it
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def stop_s3(server: S3Server, timeout: float = 15) -> None:
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, sig)
        deadline = time.monotonic() + wait
        while not process_gone(server.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_gone(server.pid):
            break
    else:
        raise FleetError(f"moto_server (pid {server.pid}) did not exit")
    S3_PIDFILE.unlink(missing_ok=True)
    log(f"s3: stopped moto_server (pid {server.pid})")


# --- inventory -----------------------------------------------------------------


def yaml_value(value: object) -> str:
    """JSON scalars and flow lists are valid YAML; no PyYAML needed on the controller."""
    return json.dumps(value)


def yaml_vars(header: str, values: dict[str, object], secret: Collection[str] = ()) -> str:
    lines = [f"# {header}", "# Generated by sandbox/fleet.py up; rewritten on every up, removed by down.", "---"]
    for key, value in values.items():
        note = "  # TEST SECRET: random per fleet" if key in secret else ""
        lines.append(f"{key}: {yaml_value(value)}{note}")
    return "\n".join(lines) + "\n"


GROUPS = ["postgres", "redis", "web", "app", "workers", "drill"]


def hosts_yml(hosts: list[Host], state: dict) -> str:
    lines = ["# runbook fleet: podman containers with systemd + sshd (sandbox/fleet.py).",
                 "# Generated by sandbox/fleet.py up; removed by down. Connection is ssh to 127.0.0.1:<port>.",
                 "---", "all:", "  vars:"]
    common = {"ansible_host": "127.0.0.1", "ansible_user": "root",
              "ansible_ssh_private_key_file": str(STATE_DIR / "ssh" / "id_ed25519"),
              "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
              "ansible_python_interpreter": "/usr/bin/python3"}
    lines += [f"    {k}: {yaml_value(v)}" for k, v in common.items()]
    lines.append("  children:")
    for group in GROUPS:
        lines += [f"    {group}:", "      hosts:"]
        for host in (h for h in hosts if group in h.groups):
            lines.append(f"        {host.name}:")
            lines.append(f"          ansible_port: {state['hosts'][host.name]['ssh_port']}")
    return "\n".join(lines) + "\n"


def group_vars(secrets_: dict[str, str], state: dict) -> dict[str, tuple[dict[str, object], set[str]]]:
    """Per group: variables (as seen from the host itself) and which of them are secrets."""
    s3 = state["s3"]
    # db1 (postgres) and db2 (drill) alike: each host's own server, same logins
    postgres = ({"runbook_pg_host": "127.0.0.1", "runbook_pg_port": 5432,
                 "runbook_pg_user": "runbook_admin", "runbook_pg_password": secrets_["pg_admin_password"],
                 "runbook_pg_database": "app", "runbook_pg_sslmode": "prefer",
                 "runbook_pg_app_user": "app", "runbook_pg_bindir": PG_BINDIR,
                 "runbook_backup_dir": BACKUP_DIR}, {"runbook_pg_password"})
    return {
        "all": ({"runbook_service_manager": "systemd",
                 "runbook_s3_endpoint_url": f"http://{s3['address']}:{s3['port']}",
                 "runbook_s3_bucket": S3_BUCKET, "runbook_s3_region": S3_REGION,
                 "runbook_s3_access_key": S3_ACCESS_KEY, "runbook_s3_secret_key": secrets_["s3_secret_key"]},
                {"runbook_s3_secret_key"}),
        "postgres": postgres,
        "drill": postgres,
        "redis": ({"runbook_redis_host": "127.0.0.1", "runbook_redis_port": 6379,
                   "runbook_redis_password": secrets_["redis_password"], "runbook_redis_db": 0},
                  {"runbook_redis_password"}),
        "app": ({"runbook_app_url": f"http://127.0.0.1:{APP_PORT}", "runbook_app_health_path": "/api/health",
                 "runbook_app_admin_token": secrets_["app_admin_token"], "runbook_app_services": ["demo-app"]},
                {"runbook_app_admin_token"}),
        # every instance of the template, as systemd has them loaded on the host (scale_workers.yml starts more
        # than demo-worker@1): a restore stops each one running and starts exactly those again
        "workers": ({"runbook_worker_services": ["demo-worker@*"]}, set()),
        "web": ({"runbook_web_url": "https://127.0.0.1:443", "runbook_web_ca_cert": CA_ON_HOST,
                 "runbook_nginx_conf": "/etc/nginx/nginx.conf"}, set()),
    }


def inventory_files(hosts: list[Host], state: dict, secrets_: dict[str, str]) -> dict[str, str]:
    files = {"hosts.yml": hosts_yml(hosts, state)}
    for group, (values, secret) in group_vars(secrets_, state).items():
        header = f"group {group}: values as seen from the host itself (modules run there)"
        files[f"group_vars/{group}.yml"] = yaml_vars(header, values, secret)
    return files


def write_inventory(hosts: list[Host], state: dict, secrets_: dict[str, str]) -> None:
    changed = [name for name, text in inventory_files(hosts, state, secrets_).items()
               if write_private(INVENTORY_DIR / name, text)]
    if changed:
        log(f"wrote inventory {INVENTORY_DIR.relative_to(ROOT)}/ ({', '.join(changed)})")


def write_env(hosts: list[Host], state: dict, secrets_: dict[str, str]) -> None:
    """.fleet/env for tests and shells on the controller (what the sandbox's .sandbox/env gives)."""
    web = state["hosts"][first_with(hosts, "web")]
    values = {"FLEET_INVENTORY": str(INVENTORY_DIR), "FLEET_SSH_KEY": str(STATE_DIR / "ssh" / "id_ed25519"),
              **{f"FLEET_SSH_PORT_{h.name.upper()}": str(state["hosts"][h.name]["ssh_port"]) for h in hosts},
              "APP_PUBLIC_URL": f"https://127.0.0.1:{web['https_port']}",
              "APP_CA_CERT": str(STATE_DIR / "tls" / "ca.crt"),
              "ADMIN_TOKEN": secrets_["app_admin_token"],
              "RUNBOOK_PG_ADMIN_USER": "runbook_admin",
              "RUNBOOK_PG_ADMIN_PASSWORD": secrets_["pg_admin_password"],
              "RUNBOOK_PG_APP_PASSWORD": secrets_["pg_app_password"],
              "REDISCLI_AUTH": secrets_["redis_password"],
              # the bucket from the controller: the host side of the fleet's bridge, the same address
              "S3_ENDPOINT_URL": f"http://{state['s3']['address']}:{state['s3']['port']}",
              "S3_BUCKET": S3_BUCKET, "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
              "AWS_SECRET_ACCESS_KEY": secrets_["s3_secret_key"], "AWS_DEFAULT_REGION": S3_REGION}
    lines = ["# Generated by sandbox/fleet.py up; source it: . .fleet/env  (TEST SECRETS inside)"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
    write_private(STATE_DIR / "env", "\n".join(lines) + "\n")


def remove_inventory() -> None:
    for name in ["hosts.yml", *(f"group_vars/{g}.yml" for g in ("all", *GROUPS))]:
        (INVENTORY_DIR / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (INVENTORY_DIR / "group_vars").rmdir()


# --- state -------------------------------------------------------------------------


def load_state() -> dict:
    path = STATE_DIR / "state.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    state.setdefault("hosts", {})
    return state


def save_state(state: dict) -> None:
    write_private(STATE_DIR / "state.json", json.dumps(state, indent=2) + "\n", 0o644)


# --- commands ----------------------------------------------------------------------


def cmd_up(count: int) -> None:
    started = time.monotonic()
    hosts = plan_hosts(count)
    ensure_controller()
    with state_lock():
        state = load_state()
        remove_unplanned(hosts, state)
        secrets_, ssh_key, ca = ensure_secrets(), ensure_ssh_key(), ensure_ca()
        image = ensure_image()
        ctx = Context(hosts=hosts, secrets=secrets_, ssh_pub=ssh_key.with_suffix(".pub").read_text(),
                      ca_pem=ca.read_bytes(), dns=ensure_network())
        booted = ensure_containers(hosts, image, state)
        prune_images(keep=image)
        state.update(network=NETWORK, image=image, project=PROJECT_ID, root=str(ROOT))
        save_state(state)
        parallel(wait_booted, [h for h in hosts if h.name in booted])
        # the bridge (and its gateway address) is there now that containers run on it
        start_s3(ctx.dns, state)
        save_state(state)
        if not demo_app_present():
            log(f"demo app not found at {DEMO_APP_SRC.relative_to(ROOT)}; app hosts run without demo-app")
        try:
            for stage in provision_stages(hosts):
                parallel(lambda h: provision(h, ctx, state), stage)
        finally:
            save_state(state)
        finish_s3(ctx.secrets["s3_secret_key"])
        write_inventory(hosts, state, ctx.secrets)
        write_env(hosts, state, ctx.secrets)
        parallel(lambda h: wait_ssh(state["hosts"][h.name]["ssh_port"], h.name), hosts)
    log(f"up: {len(hosts)} hosts ready in {time.monotonic() - started:.1f}s "
        f"(inventory: {INVENTORY_DIR.relative_to(ROOT)})")


def cmd_down() -> None:
    started = time.monotonic()
    if shutil.which("podman") is None:
        log("podman not installed; nothing to remove")
        return
    write_containers_conf()
    with state_lock():
        server = s3_running()
        if server:
            stop_s3(server)
        containers = our_containers()
        if containers:
            podman("rm", "-f", "-t", "2", *(c["Id"] for c in containers.values()))
            log(f"removed containers: {', '.join(sorted(containers))}")
        proc = podman("network", "inspect", NETWORK, check=False)
        if proc.returncode == 0 and (json.loads(proc.stdout)[0].get("labels") or {}).get(LABEL) == PROJECT_ID:
            podman("network", "rm", NETWORK)
            log(f"removed network {NETWORK}")
        remove_inventory()
        (STATE_DIR / "env").unlink(missing_ok=True)
        state = load_state()
        forget_containers()
    still = still_listening(state)
    if still:
        raise FleetError(f"still listening after down: {', '.join(still)}")
    log(f"down in {time.monotonic() - started:.1f}s (kept in .fleet/: image cache, keys, CA, secrets, ports)")


def still_listening(state: dict) -> list[str]:
    """What of ours listens after down: the ports published for the hosts and the S3 server's."""
    ours = {f"{name} ssh": ("127.0.0.1", h.get("ssh_port")) for name, h in state["hosts"].items()}
    ours |= {f"{name} https": ("127.0.0.1", h.get("https_port")) for name, h in state["hosts"].items()}
    s3 = state.get("s3", {})
    ours["s3"] = (s3.get("address", ""), s3.get("port"))
    listening = listening_sockets()
    found = [f"{what} {addr}:{port}" for what, (addr, port) in sorted(ours.items()) if (addr, port) in listening]
    server = s3_running()
    if server:
        found.append(f"moto_server pid {server.pid}")
    return found


def forget_containers() -> None:
    """Keep only the port choices, so the next up gives the same inventory when it can."""
    state = load_state()
    keep = ("ssh_port", "https_port")
    hosts = {name: {k: v for k, v in h.items() if k in keep} for name, h in state["hosts"].items()}
    kept: dict[str, object] = {"hosts": hosts}
    if state.get("s3", {}).get("port"):  # the address comes from the next network
        kept["s3"] = {"port": state["s3"]["port"]}
    save_state(kept)


def host_status(name: str, entry: dict | None, remembered: dict) -> str:
    if entry is None:
        return f"{name:<8} absent"
    ports = published_ports(entry)
    line = f"{name:<8} {entry['State']:<8} ssh 127.0.0.1:{ports.ssh:<6}"
    if ports.https:
        line += f" https 127.0.0.1:{ports.https}"
    if entry["State"] != "running":
        return line
    container = entry["Names"][0]
    system = podman_out("exec", container, "systemctl", "is-system-running", check=False)
    host = Host(name, tuple(remembered.get("roles", ())), tuple(remembered.get("groups", ())))
    units = host.units
    states = podman_out("exec", container, "systemctl", "is-active", *units, check=False).split()
    return f"{line}  systemd={system}  " + " ".join(f"{u.removesuffix('.service')}={s}"
                                                   for u, s in zip(units, states, strict=False))


def cmd_status() -> None:
    if shutil.which("podman") is None:
        raise FleetError("podman not installed; the fleet is not up")
    write_containers_conf()
    containers = our_containers()
    state = load_state()
    planned = [name for name, h in state["hosts"].items() if "container" in h]
    names = list(dict.fromkeys([*planned, *containers]))
    if not names:
        raise FleetError("fleet is not up (run: python sandbox/fleet.py up)")
    lines = [host_status(name, containers.get(name), state["hosts"].get(name, {})) for name in names]
    server = s3_running()
    listening = server is not None and (server.address, server.port) in listening_sockets()
    lines.append(f"{'s3':<8} {'running' if listening else 'absent':<8} "
                 + (f"{server.endpoint} bucket {S3_BUCKET} (moto_server pid {server.pid})" if server else ""))
    for line in lines:
        log(line)
    if any(containers.get(n, {}).get("State") != "running" for n in names):
        raise FleetError("some hosts are not running (run: python sandbox/fleet.py up)")
    if not listening:
        raise FleetError("the S3 server is not running (run: python sandbox/fleet.py up)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--hosts", type=int, default=MIN_HOSTS,
                        help=f"number of hosts (default {MIN_HOSTS}; more adds app hosts)")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            cmd_up(args.hosts)
        elif args.command == "down":
            cmd_down()
        else:
            cmd_status()
    except FleetError as exc:
        print(f"fleet: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("fleet: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
