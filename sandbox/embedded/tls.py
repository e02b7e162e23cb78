# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A local CA and a server certificate for nginx, made once with openssl."""
from __future__ import annotations

from pathlib import Path

from .common import run, which_or_fail

SERVER_DAYS = 90


def ensure(tls_dir: Path) -> None:
    tls_dir.mkdir(parents=True, exist_ok=True)
    openssl = which_or_fail("openssl", "openssl")
    ca_key, ca_crt = tls_dir / "ca.key", tls_dir / "ca.crt"
    if not ca_crt.exists():
        run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(ca_key), "-out", str(ca_crt), "-days", "3650",
             "-subj", "/CN=runbook.ops sandbox CA"])
    key, crt = tls_dir / "server.key", tls_dir / "server.crt"
    if crt.exists():
        return
    csr = tls_dir / "server.csr"
    ext = tls_dir / "server.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                   "basicConstraints=CA:FALSE\n")
    run([openssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost"])
    run([openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(crt), "-days", str(SERVER_DAYS), "-extfile", str(ext)])
    for private in (ca_key, key):
        private.chmod(0o600)
