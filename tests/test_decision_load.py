"""The promise under load: 4 workers on PostgreSQL (SIGKILLed now and then), 2
starters and 3 senders deciding at random while instances run their first step. Every send that
returned normally was applied; every instance was decided exactly once; nothing was kept and
dropped.
(The same scenario prints its figures in bench/decisions.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.decision_load import run


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_every_accepted_decision_is_applied_with_workers_killed(
    pg_url: str, tmp_path: Path
) -> None:
    # PostgreSQL only: the suite's heaviest test (40 s); on MariaDB the same promises are held
    # by the two-process race, the takeover and the two-worker tests (tests/test_races.py,
    # test_scale.py, test_scheduler.py), and this scenario passes there too (20 s)
    figures = run(pg_url, tmp_path, instances=80)

    assert figures.problems == []
    assert figures.kills >= 3, "the run ended before the workers could be killed"
    assert figures.decided_once == 80
    assert figures.sends["accepted"] == figures.applied == 80 - figures.by_timer
    assert figures.sends["kept"] == 0
    # the race the scenario is about happened: decisions came before their waits began
    assert figures.sends["NotWaiting"] > 0
    assert figures.sends["AlreadyDecided"] > 0
