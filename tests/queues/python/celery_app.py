# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A real Celery app on the Redis broker for the queue tests, and a fixture CLI that prints JSON.

    python celery_app.py populate <queue>     tasks at priorities 0, 3, 6 and 9 (kombu's priority lists)
    python celery_app.py eta <queue>          one task due in an hour (a running worker holds it unacked)
    python celery_app.py counts <queue>...    kombu's own count (Channel._size, what queue_declare reports) per queue
    python celery_app.py inspect              what the running workers hold (reserved + scheduled + active)
    celery -A celery_app worker -Q <queue>    the real worker

Broker from QUEUE_REDIS_URL; kombu's global_keyprefix from QUEUE_CELERY_PREFIX.
"""
from __future__ import annotations

import json
import os
import sys

from celery import Celery

app = Celery("runbook_queue_test", broker=os.environ["QUEUE_REDIS_URL"])
app.conf.update(broker_transport_options={"global_keyprefix": os.environ.get("QUEUE_CELERY_PREFIX", "")},
                broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
                task_default_queue="celery")


@app.task(name="runbook.send_alert")
def send_alert(n: int = 0) -> str:
    return f"sent {n}"


def main() -> None:
    cmd, names = sys.argv[1], sys.argv[2:]
    if cmd == "populate":
        for i, priority in enumerate([0, 0, 3, 5, 6, 9, 9]):
            send_alert.apply_async((i,), queue=names[0], priority=priority)
        print(json.dumps({"ok": True}))
    elif cmd == "eta":
        send_alert.apply_async((99,), queue=names[0], countdown=3600)
        print(json.dumps({"ok": True}))
    elif cmd == "counts":
        with app.connection_for_read() as conn:
            channel = conn.default_channel
            print(json.dumps({n: channel._size(n) for n in names}))
    elif cmd == "inspect":
        inspect = app.control.inspect(timeout=5)
        held = 0
        for method in (inspect.reserved, inspect.scheduled, inspect.active):
            held += sum(len(v) for v in (method() or {}).values())
        print(json.dumps({"held": held}))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
