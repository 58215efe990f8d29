"""Known DANDI instances, the same table dandi-cli ships, so they resolve with no round trip."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Instance:
    """A DANDI deployment: its name, web UI URL (may be unknown) and API base URL.

    ``api`` ends in ``/api`` with no trailing slash, as in dandi-cli.
    """

    name: str
    gui: str | None
    api: str

    @property
    def api_key_env(self) -> str:
        """The environment variable dandi-cli reads this instance's API key from."""
        return self.name.upper().replace("-", "_") + "_API_KEY"

    @property
    def upper_name(self) -> str:
        return self.name.upper()


def _docker_host() -> str:
    return os.environ.get("DANDI_INSTANCEHOST", "localhost")


def known_instances() -> dict[str, Instance]:
    """The built-in instances, keyed by lower-case name."""
    h = _docker_host()
    table = [
        Instance("dandi", "https://dandiarchive.org", "https://api.dandiarchive.org/api"),
        Instance("dandi-sandbox", "https://sandbox.dandiarchive.org",
                 "https://api.sandbox.dandiarchive.org/api"),
        Instance("dandi-api-local-docker-tests", f"http://{h}:8085", f"http://{h}:8000/api"),
        Instance("linc", "https://lincbrain.org", "https://api.lincbrain.org/api"),
        Instance("linc-staging", "https://staging.lincbrain.org",
                 "https://staging-api.lincbrain.org/api"),
        Instance("ember-dandi", "https://dandi.emberarchive.org",
                 "https://api-dandi.emberarchive.org/api"),
        Instance("ember-dandi-sandbox", "https://dandi.sandbox.emberarchive.org",
                 "https://api-dandi.sandbox.emberarchive.org/api"),
    ]
    found = {i.name: i for i in table}
    found.update(_extra_instances())
    found.update(_registered)
    return found


_registered: dict[str, Instance] = {}


def register_instance(instance: Instance) -> None:
    """Make ``instance`` known by name (for ``dandi://NAME/...`` and ``NAME:ID`` URLs)."""
    _registered[instance.name.lower()] = instance


def unregister_instance(name: str) -> None:
    _registered.pop(name.lower(), None)


def _extra_instances() -> dict[str, Instance]:
    """Instances declared in ``DANDIGET_EXTRA_INSTANCES``: ``{"name": {"api": ..., "gui": ...}}``.

    dandi-cli can only name its hard-coded instances; this lets ``dandi://myarchive/000001``
    work for a private deployment (or the built-in test archive) without code.
    """
    raw = os.environ.get("DANDIGET_EXTRA_INSTANCES")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
        return {
            name.lower(): Instance(name.lower(), v.get("gui"), v["api"].rstrip("/"))
            for name, v in data.items()
        }
    except (ValueError, KeyError, AttributeError, TypeError) as e:
        raise ValueError(f"DANDIGET_EXTRA_INSTANCES is not valid: {e}") from None


def instance_by_url(url: str) -> Instance | None:
    """The known instance whose GUI or API URL is exactly ``url`` (trailing slash ignored)."""
    url = url.rstrip("/")
    for inst in known_instances().values():
        if url in (inst.gui, inst.api):
            return inst
    return None
