"""Slack interactions: how fast `POST /slack/interactions` acknowledges, under load.

A fake Slack (tests/slack_fake.py, a real HTTP server on 127.0.0.1) takes the Web API calls;
a real uvicorn on 127.0.0.1 serves the app on a fresh SQLite file. 900 approvals are announced,
then 1,000 signed interactions are sent by 8 clients at once: one Approve click per approval,
plus 50 forged (wrong secret) and 50 replayed (the same signed request again). Each client
times its requests from send to answer: that is the acknowledgement Slack waits for (it gives
up after 3 s; the target is a p99 under 100 ms). The decisions themselves are applied after the
answer, on the endpoint's workers; how long they take to drain is printed too.

Run: `.venv/bin/python bench/slack.py [--interactions 1000] [--clients 8] [--db URL]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--bad-share", type=float, default=0.10)
    parser.add_argument("--db", help="a SQLAlchemy URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    from slack_volume import run

    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{tmp}/slack-bench.db"
        outcome = run(
            url,
            interactions=args.interactions,
            bad_share=args.bad_share,
            clients=args.clients,
        )
        refused = {
            kind: sorted({s.status for s in outcome.sent if s.kind == kind})
            for kind in ("forged", "replay")
        }
        print(f"signoff Slack bench on {url.split('://')[0]}, {args.clients} clients:")
        print("  " + outcome.summary())
        print(
            f"  statuses: forged {refused['forged']}, replayed (or their original) "
            f"{refused['replay']}"
        )
        if outcome.engine is not None:
            outcome.engine.close()


if __name__ == "__main__":
    main()
