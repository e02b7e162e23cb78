# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Deterministic seed and ingest data: plain tuples, no database access."""
from __future__ import annotations

import random
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

SEED_TENDERS = 300
SEED_EVENTS = 60
SEED_USERS = 8


class Tender(NamedTuple):
    reference: str
    title: str
    buyer: str
    country: str
    cpv_code: str
    value_eur: Decimal
    publication_date: date
    deadline: date
    created_at: datetime


class Event(NamedTuple):
    user_id: str
    event_type: str
    payload: str  # JSON text, cast to jsonb on insert
    timestamp: datetime


class FeatureFlag(NamedTuple):
    name: str
    enabled: bool
    kill_switch: bool
    rollout_percentage: int
    description: str


class IngestRun(NamedTuple):
    job_id: str
    started_at: datetime
    finished_at: datetime
    status: str
    tenders_added: int


FEATURE_FLAGS: tuple[FeatureFlag, ...] = (
    FeatureFlag("new_search", True, False, 25, "Full-text search rewrite, gradual rollout"),
    FeatureFlag("email_alerts", True, False, 100, "Daily e-mail alerts for saved filters"),
    FeatureFlag("ai_summaries", False, False, 0, "Generated tender summaries"),
    FeatureFlag("bulk_export", True, True, 100, "CSV export, disabled by kill switch"),
)

_SUBJECTS = (
    ("Road maintenance works", "45233141"),
    ("Cloud hosting services", "72415000"),
    ("Hospital cleaning services", "90911200"),
    ("School catering", "55524000"),
    ("Office furniture supply", "39130000"),
    ("IT security audit", "72810000"),
    ("Electric buses", "34144910"),
    ("Waste collection", "90511000"),
)
_BUYERS = (
    ("City of Lyon", "FR"),
    ("Stadt Köln", "DE"),
    ("Comune di Torino", "IT"),
    ("Ayuntamiento de Valencia", "ES"),
    ("Gemeente Utrecht", "NL"),
    ("Ville de Liège", "BE"),
    ("Miasto Kraków", "PL"),
)
_EVENT_TYPES = ("login", "search", "tender.viewed", "alert.created")


def make_tender(rng: random.Random, reference: str, created_at: datetime) -> Tender:
    subject, cpv = rng.choice(_SUBJECTS)
    buyer, country = rng.choice(_BUYERS)
    published = created_at.date() - timedelta(days=rng.randint(0, 3))
    return Tender(
        reference=reference,
        title=f"{subject} ({buyer})",
        buyer=buyer,
        country=country,
        cpv_code=cpv,
        value_eur=Decimal(rng.randrange(10_000, 5_000_000, 500)),
        publication_date=published,
        deadline=published + timedelta(days=rng.randint(20, 60)),
        created_at=created_at,
    )


def seed_tenders(now: datetime, count: int = SEED_TENDERS) -> list[Tender]:
    """Tenders spread over the last 30 days; references are stable across runs."""
    rng = random.Random(42)
    return [
        make_tender(
            rng,
            f"TED-SEED-{i:06d}",
            now - timedelta(seconds=rng.randint(6 * 3600, 30 * 86400)),
        )
        for i in range(1, count + 1)
    ]


def ingest_tenders(now: datetime, job_id: str, count: int) -> list[Tender]:
    """New tenders for one ingest job; the job id keeps references unique."""
    rng = random.Random(job_id)
    return [make_tender(rng, f"TED-{job_id[:12]}-{i:02d}", now) for i in range(1, count + 1)]


def seed_events(now: datetime, count: int = SEED_EVENTS) -> list[Event]:
    rng = random.Random(7)
    users = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(SEED_USERS)]
    events = []
    for i in range(count):
        kind = rng.choice(_EVENT_TYPES)
        payload = f'{{"seq": {i}, "tender": "TED-SEED-{rng.randint(1, SEED_TENDERS):06d}"}}'
        when = now - timedelta(seconds=rng.randint(60, 7 * 86400))
        events.append(Event(rng.choice(users), kind, payload, when))
    return events


def seed_ingest_runs(now: datetime) -> list[IngestRun]:
    """A scheduler history every 4 h whose newest run finished at `now`,
    so a freshly migrated app reports a fresh last_ingest_time."""
    runs = []
    for n in range(5, -1, -1):
        finished = now - timedelta(hours=4 * n)
        runs.append(IngestRun(f"seed-{n}", finished - timedelta(seconds=40), finished, "success", 50))
    return runs
