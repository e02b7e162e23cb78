#!/bin/sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Runs inside a fleet host at `up` (podman exec), after sandbox/fleet.py has unpacked
# the host's files. Idempotent: a second run converges to the same state.
# Usage: provision.sh ROLE...   (roles: postgres redis app web)
# Secrets arrive in the environment (podman exec --env-file), never as arguments.
set -eu

log() { echo "provision[$(hostname)]: $*"; }

# wait_until SECONDS CMD...: retry CMD until it succeeds.
wait_until() {
  deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then log "timed out waiting for: $*"; return 1; fi
    sleep 0.3
  done
}

provision_postgres() {
  conf=/etc/postgresql/15/main
  # The image has no cluster: this host's own, made once (its own system identifier). Our
  # conf.d/ and tls/ are unpacked already; pg_createcluster keeps them.
  if [ ! -f /var/lib/postgresql/15/main/PG_VERSION ]; then
    pg_createcluster --locale C.UTF-8 15 main >/dev/null
    log "created cluster 15/main"
  fi
  grep -q '^# runbook fleet' "$conf/pg_hba.conf" ||
    printf '\n# runbook fleet: hosts on the fleet network, password auth\nhost    all             all             samenet                 scram-sha-256\n' \
      >> "$conf/pg_hba.conf"
  # runbook_backup_dir: made here like a mounted backup volume (the backup role never creates it).
  install -d -m 0700 -o root -g root /var/backups/postgresql
  tls=$conf/tls
  chown -R postgres:postgres "$tls"
  chmod 0600 "$tls/server.key"
  systemctl enable --quiet postgresql.service postgresql@15-main.service
  # listen_addresses and ssl need a restart, not a reload.
  systemctl restart postgresql@15-main.service
  wait_until 60 runuser -u postgres -- pg_isready -q
  # psql reads the passwords from its environment (\getenv), so they never
  # show in ps as arguments.
  runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
\getenv admin_pw FLEET_PG_ADMIN_PASSWORD
\getenv app_pw FLEET_PG_APP_PASSWORD
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'runbook_admin') AS need_admin \gset
\if :need_admin
CREATE ROLE runbook_admin LOGIN SUPERUSER;
\endif
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app') AS need_app \gset
\if :need_app
CREATE ROLE app LOGIN;
\endif
ALTER ROLE runbook_admin WITH LOGIN SUPERUSER PASSWORD :'admin_pw';
ALTER ROLE app WITH LOGIN NOSUPERUSER PASSWORD :'app_pw';
SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'app') AS need_db \gset
\if :need_db
CREATE DATABASE app OWNER app;
\endif
ALTER DATABASE app OWNER TO app;
SQL
  log "postgresql@15-main ready"
}

provision_redis() {
  chown root:redis /etc/redis/runbook-fleet.conf
  chmod 0640 /etc/redis/runbook-fleet.conf
  systemctl enable --quiet redis-server.service
  systemctl restart redis-server.service
  export REDISCLI_AUTH="$FLEET_REDIS_PASSWORD"
  wait_until 30 redis-cli -h 127.0.0.1 ping
  log "redis-server ready"
}

provision_app() {
  chown -R root:root /opt/demo-app
  chmod 0600 /etc/demo-app/env
  systemctl daemon-reload
  if [ ! -d /opt/demo-app/demo_app ]; then
    log "no demo app package delivered; demo-app.service stays disabled"
    return 0
  fi
  systemctl enable --quiet demo-app.service demo-worker@1.service
  systemctl restart demo-app.service demo-worker@1.service
  wait_until 90 curl -fsS "http://127.0.0.1:${FLEET_APP_PORT}/api/health"
  log "demo-app and demo-worker@1 ready"
}

provision_web() {
  chmod 0600 /etc/nginx/tls/server.key
  update-ca-certificates >/dev/null 2>&1
  rm -f /etc/nginx/sites-enabled/default
  ln -sfn /etc/nginx/sites-available/runbook-fleet /etc/nginx/sites-enabled/runbook-fleet
  nginx -t -q
  systemctl enable --quiet nginx.service
  systemctl restart nginx.service
  # TLS must verify; the proxied answer may still be a 502 while the app is away.
  wait_until 30 curl -sS -o /dev/null --cacert /usr/local/share/ca-certificates/runbook-fleet-ca.crt \
    https://127.0.0.1/
  log "nginx ready"
}

for role in "$@"; do
  case "$role" in
    postgres) provision_postgres ;;
    redis) provision_redis ;;
    app) provision_app ;;
    web) provision_web ;;
    *) log "unknown role: $role"; exit 2 ;;
  esac
done
