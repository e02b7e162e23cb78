#!/bin/sh
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Runs inside the image rootfs (chroot) after sandbox/fleet/image/rootfs/ is copied in.
# Turns the debootstrap tree into a host image; per-host config and secrets come at `up`.
set -eu

# Services start only on the host whose role enables them at `up`.
systemctl disable postgresql.service redis-server.service nginx.service

# No PostgreSQL cluster in the image: every PostgreSQL host makes its own at `up`
# (provision.sh), so that each has its own system identifier, as real servers do (the
# restore role tells a backup of this cluster from another server's by it).
if [ -d /etc/postgresql/15/main ]; then pg_dropcluster 15 main; fi

# Units that have nothing to do in a container.
systemctl mask systemd-remount-fs.service getty@tty1.service serial-getty@.service \
  console-getty.service systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer fstrim.timer

# Containers lack CAP_AUDIT_CONTROL; a required pam_loginuid would refuse ssh logins.
sed -i 's/^session\s\+required\s\+pam_loginuid.so/session optional pam_loginuid.so/' /etc/pam.d/sshd

# Every container makes its own host keys (ssh.service drop-in) and machine id.
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id

# Role configuration lands in these include files at `up`.
grep -q '^include /etc/redis/runbook-fleet.conf' /etc/redis/redis.conf ||
  printf '\n# runbook fleet settings (written at up)\ninclude /etc/redis/runbook-fleet.conf\n' >> /etc/redis/redis.conf

# The demo app runs as its own system user.
id demo-app >/dev/null 2>&1 ||
  useradd --system --user-group --home-dir /opt/demo-app --no-create-home --shell /usr/sbin/nologin demo-app

systemctl enable ssh.service
apt-get clean
rm -rf /var/log/*.log /var/cache/debconf/*-old
