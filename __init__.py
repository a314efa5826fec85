"""signoff: durable workflows with humans in the loop.

This folder is the `signoff` package: `engine/` is installed as `signoff.engine` (the embeddable
engine), `web/` as `signoff.web` (the dashboard, JSON API and Slack endpoint), and `templates/`
and `static/` ship beside them. Nothing is installed under the generic names `engine` or `web`.
"""

__version__ = "0.2.0"
