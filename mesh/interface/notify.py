"""Notifications: a Slack-compatible JSON POST (`{"text": …}`) to a project's `webhook_url` in
mesh.yml (`${VAR}` from the environment, so the secret URL stays out of the file) on a breaking-change
proposal, an acknowledgement and a publish. A notification never fails what it reports: a refused
or unreachable webhook costs one warning line on stderr."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

import orjson

from mesh.project.config import Mesh

TIMEOUT_SECONDS = 10


def notify(mesh: Mesh, project: str, text: str, event: str) -> bool:
    """POST `text` to `project`'s webhook, if it has one; whether it was delivered."""
    settings = mesh.config.projects.get(project)
    url = (settings.webhook_url or "").strip() if settings is not None else ""
    if not url:
        return False
    body = orjson.dumps({"text": text, "event": event, "project": project, "env": mesh.env})
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            response.read()
        return True
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"warning: {project}'s webhook did not take the {event} notification: {exc}", file=sys.stderr)
        return False
