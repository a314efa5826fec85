"""signoff's web app: the dashboard, the JSON API, Slack interactivity."""

from signoff.web.app import create_app
from signoff.web.oidc import OIDC

__all__ = ["OIDC", "create_app"]
