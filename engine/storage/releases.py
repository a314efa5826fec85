"""The `signoff_releases` table: each workflow's releases as engines recorded them.

Recording is cheap and safe with many processes starting at once: one UPDATE bumps what is
there already; a release not there yet is inserted on its own, and a unique constraint on
(workflow, fingerprint) turns a concurrent twin insert into a no-op (insert-or-ignore, written
as insert-and-catch so that it reads the same on every database).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from signoff.engine.core.releases import Release, read_renames
from signoff.engine.storage.store import Store
from signoff.engine.storage.tables import RELEASES
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

_C = RELEASES.c


class ReleaseRows:
    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, releases: Iterable[Release], now: datetime) -> None:
        """Record each release (insert-or-ignore), or bump its last_seen and un-retire it (a
        process runs it again)."""
        wanted = list(releases)
        if not wanted:
            return
        missing = [r for r in wanted if not self._bump([r], now, unretire=True)]
        for release in missing:
            try:
                with self.store.write() as conn:
                    conn.execute(
                        RELEASES.insert().values(
                            workflow=release.workflow,
                            fingerprint=release.fingerprint,
                            first_seen=now,
                            last_seen=now,
                            retired_at=None,
                            statements=json.dumps(sorted(release.statements)),
                            renames=release.renames_json(),
                        )
                    )
            except IntegrityError:  # another process recorded it in the same instant
                self._bump([release], now, unretire=True)

    def beat(self, releases: Iterable[Release], now: datetime) -> None:
        """Bump last_seen: a process still runs these releases."""
        self._bump(list(releases), now, unretire=False)

    def _bump(self, releases: list[Release], now: datetime, unretire: bool) -> int:
        if not releases:
            return 0
        which = or_(
            *(and_(_C.workflow == r.workflow, _C.fingerprint == r.fingerprint) for r in releases)
        )
        values: dict[str, object] = {"last_seen": now}
        if unretire:
            values["retired_at"] = None
        with self.store.write() as conn:
            done = conn.execute(update(RELEASES).where(which).values(**values))
            return int(done.rowcount or 0)

    def of(self, workflow: str | None = None) -> list[Release]:
        """The releases recorded (of one workflow), oldest first."""
        query = select(RELEASES).order_by(_C.workflow, _C.seq)
        if workflow is not None:
            query = query.where(_C.workflow == workflow)
        with self.store.db.connect() as conn:
            rows = conn.execute(query).mappings().all()
        found = []
        for row in rows:
            renames, events = read_renames(row["renames"])
            found.append(
                Release(
                    workflow=row["workflow"],
                    fingerprint=row["fingerprint"],
                    statements=frozenset(json.loads(row["statements"] or "[]")),
                    renames=renames,
                    events=events,
                    seq=row["seq"],
                    first_seen=row["first_seen"],
                    last_seen=row["last_seen"],
                    retired_at=row["retired_at"],
                )
            )
        return found

    def retire(self, fingerprints: Iterable[str], now: datetime) -> int:
        """Mark releases retired (of any workflow, by fingerprint or a prefix of 6+ characters
        of one); returns how many rows changed."""
        changed = 0
        with self.store.write() as conn:
            for fingerprint in fingerprints:
                done = conn.execute(
                    update(RELEASES)
                    .where(
                        _C.fingerprint.startswith(fingerprint, autoescape=True),
                        _C.retired_at.is_(None),
                    )
                    .values(retired_at=now)
                )
                changed += int(done.rowcount or 0)
        return changed
