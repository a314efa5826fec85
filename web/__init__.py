"""signoff's web app: the dashboard, the JSON API, Slack interactivity."""

from signoff.web.app import create_app

__all__ = ["create_app"]
