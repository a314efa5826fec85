"""How long something took or how far away it is, in the few words people read at a glance."""

from __future__ import annotations


def relative(seconds: float) -> str:
    """`3d`, `2d 5h`, `4h`, `3h 20m`, `12m`, `40s`."""
    if seconds >= 86400 - 1800:  # a day, give or take the rounding to hours
        days, hours = divmod(round(seconds / 3600), 24)
        return f"{days}d" + (f" {hours}h" if hours else "")
    if seconds >= 3600 - 30:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours}h" + (f" {minutes}m" if minutes else "")
    if seconds >= 60 - 0.5:
        return f"{round(seconds / 60)}m"
    return f"{int(seconds)}s"


def duration(seconds: float | None) -> str:
    """`3 h`, `2 d 5 h`, `3 h 20 min`, `12 min`, `40 s`: how long something took, for people."""
    if seconds is None:
        return ""
    text = relative(max(0.0, seconds))
    return text.replace("d", " d").replace("h", " h").replace("m", " min").replace("s", " s")


def run_time(ms: float) -> str:
    """How long a step ran: `under 1 ms`, `34 ms`, `2 s`, `3 min`."""
    if ms < 1:
        return "under 1 ms"
    if ms < 1000:
        return f"{round(ms)} ms"
    return duration(ms / 1000)
