"""JSON documents the API serves, rendered per request from store records.

Shapes and key sets follow the golden captures of a real dandi-archive server
(``tests/data/golden``, copied from ``shared/golden``): DRF serializers for
dandisets/versions/assets, the stored metadata dicts with the fields the server computes on
every read (``id``, ``contentUrl``, ``digest``, ``access``, ``assetsSummary``,
``citation``...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from dandiget.testing.records import Asset, Dandiset, PublishInfo, Version, Zarr

SCHEMA_VERSION = "0.7.0"
CONTEXT_URL = (
    f"https://raw.githubusercontent.com/dandi/schema/master/releases/{SCHEMA_VERSION}/context.json"
)
ALLOWED_SCHEMA_VERSIONS = [
    "0.4.4", "0.5.1", "0.5.2", "0.6.0", "0.6.1", "0.6.2", "0.6.3", "0.6.4", "0.6.5", "0.6.6",
    "0.6.7", "0.6.8", "0.6.9", "0.6.10", "0.7.0",
]
CLI_SOFTWARE = {
    "url": "https://github.com/dandi/dandi-cli",
    "name": "DANDI Command Line Interface",
    "version": "0.81.0",
    "schemaKey": "Software",
    "identifier": "RRID:SCR_019009",
}
MOUSE = {
    "name": "Mus musculus - House mouse",
    "schemaKey": "SpeciesType",
    "identifier": "http://purl.obolibrary.org/obo/NCBITaxon_10090",
}
NWB_STANDARD = {
    "name": "Neurodata Without Borders (NWB)",
    "schemaKey": "StandardsType",
    "identifier": "RRID:SCR_015242",
}
NGFF_STANDARD = {"name": "OME/NGFF Standard", "schemaKey": "StandardsType",
                 "identifier": "DOI:10.25504/FAIRsharing.9af712"}
BIDS_STANDARD = {"name": "Brain Imaging Data Structure (BIDS)", "schemaKey": "StandardsType",
                 "identifier": "RRID:SCR_016124"}
EMBARGO_END = "2099-12-31"


@dataclass
class Site:
    """Where the archive lives: the URLs baked into documents."""

    api_url: str = "http://127.0.0.1:0/api"
    content_base: str = "http://127.0.0.1:0"
    gui_url: str = "http://127.0.0.1:0"
    instance_name: str = "DANDI"
    instance_identifier: str = "RRID:ABC_123456"
    doi_prefix: str = "10.80507"
    cli_minimal_version: str = "0.60.0"
    server_version: str = "1.0.0.post1.dev35+gdandiget"


# --------------------------------------------------------------------------- formatting


def drf_time(t: datetime) -> str:
    """DRF DateTimeField: isoformat with ``Z`` for UTC."""
    s = t.isoformat()
    return s[:-6] + "Z" if s.endswith("+00:00") else s


def str_time(t: datetime) -> str:
    """Python ``str(datetime)`` (the Zarr listing's LastModified)."""
    return str(t)


def object_url(site: Site, key: str) -> str:
    """Unsigned bucket URL of ``key``."""
    return f"{site.content_base}/{quote(key, safe='/')}"


# --------------------------------------------------------------------------- dandisets


def contact_person(d: Dandiset) -> str:
    v = d.latest_published or d.draft
    for c in version_user_metadata(v).get("contributor", []):
        roles = c.get("roleName") or []
        if "dcite:ContactPerson" in roles:
            return str(c.get("name", ""))
    return ""


def version_summary(v: Version, long: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": v.version,
        "name": v.name,
        "asset_count": v.asset_count,
    }
    if long:
        out["active_uploads"] = 0
    out.update(size=v.size, status=v.status, created=drf_time(v.created),
               modified=drf_time(v.modified))
    if long:
        out["release_notes"] = v.release_notes
    return out


def dandiset_short(d: Dandiset) -> dict[str, Any]:
    return {
        "identifier": d.identifier,
        "created": drf_time(d.created),
        "modified": drf_time(d.modified),
        "contact_person": contact_person(d),
        "embargo_status": d.embargo_status,
        "star_count": 0,
        "is_starred": False,
    }


def dandiset_json(d: Dandiset, long: bool) -> dict[str, Any]:
    out = dandiset_short(d)
    if long:
        mrp = d.latest_published
    else:  # the list view picks the highest id
        mrp = max(d.published, key=lambda v: v.pk) if d.published else None
    out["most_recent_published_version"] = version_summary(mrp, long) if mrp else None
    out["draft_version"] = version_summary(d.draft, long)
    return out


def version_list_item(v: Version) -> dict[str, Any]:
    out = version_summary(v, True)
    notes = out.pop("release_notes")
    out["dandiset"] = dandiset_short(v.dandiset)
    out["release_notes"] = notes
    return out


def version_info(site: Site, v: Version) -> dict[str, Any]:
    out = version_list_item(v)
    out["asset_validation_errors"] = []
    out["version_validation_errors"] = []
    out["metadata"] = version_metadata(site, v)
    out["contact_person"] = contact_person(v.dandiset)
    return out


# --------------------------------------------------------------------------- version metadata


def default_contributor(d: Dandiset) -> list[dict[str, Any]]:
    return [{
        "name": "Tester, Test",
        "email": "tester@example.org",
        "roleName": ["dcite:ContactPerson"],
        "schemaKey": "Person",
        "affiliation": [],
        "includeInCitation": True,
    }]


def version_user_metadata(v: Version) -> dict[str, Any]:
    """The fields an uploader supplies, with defaults for what a spec leaves out."""
    d = v.dandiset
    out: dict[str, Any] = {
        "license": ["spdx:CC-BY-4.0"],
        "schemaKey": "Dandiset",
        "contributor": default_contributor(d),
        "description": f"Test dandiset {d.identifier} served by dandiget.testing.",
        "schemaVersion": SCHEMA_VERSION,
    }
    out.update(v.metadata)
    return out


def _publish_activity(site: Site, info: PublishInfo) -> dict[str, Any]:
    date = info.date.isoformat()
    return {
        "id": f"urn:uuid:{info.activity_id}",
        "name": "DANDI publish",
        "endDate": date,
        "schemaKey": "PublishActivity",
        "startDate": date,
        "wasAssociatedWith": [{
            "id": f"urn:uuid:{info.software_id}",
            "name": "DANDI API",
            "version": "0.1.0",
            "schemaKey": "Software",
            "identifier": site.instance_identifier,
        }],
    }


def access_list(embargoed: bool) -> list[dict[str, Any]]:
    if embargoed:
        return [{"status": "dandi:EmbargoedAccess", "schemaKey": "AccessRequirements",
                 "embargoedUntil": EMBARGO_END}]
    return [{"status": "dandi:OpenAccess", "schemaKey": "AccessRequirements"}]


def version_metadata(site: Site, v: Version) -> dict[str, Any]:
    """``GET /dandisets/{id}/versions/{v}/``: the stored dict with computed fields."""
    d = v.dandiset
    user = version_user_metadata(v)
    vid = f"{site.instance_name}:{d.identifier}/{v.version}"
    url = f"{site.gui_url}/dandiset/{d.identifier}/{v.version}"
    doi = None
    if not v.is_draft:
        doi = f"{site.doi_prefix}/{site.instance_name.lower()}.{d.identifier}/{v.version}"
    out: dict[str, Any] = {"id": vid}
    if doi:
        out["doi"] = doi
    out["url"] = url
    out["name"] = v.name
    out["access"] = access_list(d.embargoed)
    out["license"] = user.pop("license")
    out["version"] = v.version
    out["@context"] = CONTEXT_URL
    year = (v.published_info.date if v.published_info else d.created).year
    names = "; ".join(c.get("name", "") for c in user.get("contributor", [])
                      if c.get("includeInCitation"))
    where = f"https://doi.org/{doi}" if doi else url
    out["citation"] = (f"{names} ({year}) {v.name} (Version {v.version}) [Data set]. "
                       f"DANDI Archive. {where}")
    out["schemaKey"] = user.pop("schemaKey")
    out["identifier"] = f"{site.instance_name}:{d.identifier}"
    out["repository"] = site.gui_url
    out["contributor"] = user.pop("contributor")
    out["dateCreated"] = d.created.isoformat()
    out["description"] = user.pop("description")
    if v.published_info is not None:
        out["publishedBy"] = _publish_activity(site, v.published_info)
    out["assetsSummary"] = assets_summary(v)
    if v.published_info is not None:
        out["datePublished"] = v.published_info.date.isoformat()
        if v.release_notes:
            out["releaseNotes"] = v.release_notes
    out["schemaVersion"] = user.pop("schemaVersion")
    if v.is_draft:
        out["manifestLocation"] = [f"{site.api_url}/dandisets/{d.identifier}/versions/draft/assets/"]
    else:
        out["manifestLocation"] = [
            object_url(site, f"dandisets/{d.identifier}/{v.version}/assets.yaml")]
    for k, val in user.items():
        out.setdefault(k, val)
    return out


_ONE_SECOND = timedelta(seconds=1)
_EXTRACTION_TIME = timedelta(milliseconds=435)
_SUB_RE = re.compile(r"(?:^|/)sub-([A-Za-z0-9]+)")


def _participant(a: Asset) -> str | None:
    if not a.path.lower().endswith(".nwb"):
        return None
    m = _SUB_RE.search(a.path)
    return m.group(1) if m else None


def assets_summary(v: Version) -> dict[str, Any]:
    """dandischema's AssetsSummary, derived from the assets' paths and metadata."""
    def build() -> dict[str, Any]:
        if not v.assets:
            return {"schemaKey": "AssetsSummary", "numberOfBytes": 0, "numberOfFiles": 0}
        subjects: set[str] = set()
        species: dict[str, dict[str, Any]] = {}
        standards: dict[str, dict[str, Any]] = {}
        for a in v.assets:
            low = a.path.lower()
            if low.endswith(".nwb"):
                standards.setdefault(NWB_STANDARD["name"], NWB_STANDARD)
            elif low.endswith((".ome.zarr", ".ngff")):
                standards.setdefault(NGFF_STANDARD["name"], NGFF_STANDARD)
            if low.endswith("dataset_description.json"):
                standards.setdefault(BIDS_STANDARD["name"], BIDS_STANDARD)
            for p in asset_user_metadata(a).get("wasAttributedTo", []):
                if p.get("schemaKey") == "Participant":
                    subjects.add(str(p.get("identifier")))
                    sp = p.get("species")
                    if isinstance(sp, dict) and "name" in sp:
                        species.setdefault(sp["name"], sp)
        out: dict[str, Any] = {
            "species": list(species.values()),
            "approach": [],
            "schemaKey": "AssetsSummary",
            "dataStandard": list(standards.values()),
            "numberOfBytes": v.size,
            "numberOfFiles": len(v.assets),
        }
        if subjects:
            out["numberOfSubjects"] = len(subjects)
        out["variableMeasured"] = []
        out["measurementTechnique"] = []
        return out

    return v.cached("assetsSummary", build)


# --------------------------------------------------------------------------- assets


def asset_user_metadata(a: Asset) -> dict[str, Any]:
    """What dandi-cli would have uploaded for this asset (plus the spec's extra fields)."""
    t = a.created - _ONE_SECOND
    extracted = drf_time(t)
    aid = a.asset_id
    gen = {
        # a stable UUID distinct from the asset id (tail reversed), cheap enough for 100k rows
        "id": f"urn:uuid:{aid[:24]}{aid[:23:-1]}",
        "name": "Metadata generation",
        "endDate": extracted,
        "schemaKey": "Activity",
        "startDate": drf_time(t - _EXTRACTION_TIME),
        "description": "Metadata generated by DANDI cli",
        "wasAssociatedWith": [CLI_SOFTWARE],
    }
    out: dict[str, Any] = {}
    label = _participant(a)
    if label is not None:
        out["approach"] = []
    out["schemaKey"] = "Asset"
    out["dateModified"] = extracted
    out["schemaVersion"] = SCHEMA_VERSION
    out["encodingFormat"] = a.encoding_format
    out["wasGeneratedBy"] = [gen]
    if label is not None:
        out["wasAttributedTo"] = [{
            "age": {"value": "P60D", "unitText": "ISO-8601 duration", "schemaKey": "PropertyValue",
                    "valueReference": {"value": "dandi:BirthReference",
                                       "schemaKey": "PropertyValue"}},
            "sex": {"name": "Female", "schemaKey": "SexType",
                    "identifier": "http://purl.obolibrary.org/obo/PATO_0000383"},
            "species": MOUSE,
            "schemaKey": "Participant",
            "identifier": label,
        }]
    if a.blob_date_modified is not None:
        out["blobDateModified"] = a.blob_date_modified
    if label is not None:
        out["variableMeasured"] = []
        out["measurementTechnique"] = []
    if a.extra:
        extra = dict(a.extra)
        # Activities the file itself records come first; dandi-cli always adds its own.
        if "wasGeneratedBy" in extra:
            out["wasGeneratedBy"] = [*extra.pop("wasGeneratedBy"), gen]
        out.update(extra)
    return out


def asset_content_url(site: Site, a: Asset) -> str:
    # blob keys and zarr prefixes are hex, dashes and slashes: nothing to quote
    if a.blob is not None:
        return f"{site.content_base}/{a.blob.key}"
    assert a.zarr is not None
    return f"{site.content_base}/{a.zarr.prefix}"


def asset_digest(a: Asset) -> dict[str, Any]:
    if a.blob is not None:
        return a.blob.digest_dict()
    assert a.zarr is not None
    return {"dandi:dandi-zarr-checksum": a.zarr.checksum}


def asset_metadata(site: Site, a: Asset) -> dict[str, Any]:
    """The full asset metadata: stored fields plus those the server recomputes on read."""
    out = asset_user_metadata(a)
    out["id"] = f"dandiasset:{a.asset_id}"
    out["access"] = [{"schemaKey": "AccessRequirements", "status": "dandi:EmbargoedAccess",
                      "embargoedUntil": EMBARGO_END}] if a.embargoed else \
        [{"schemaKey": "AccessRequirements", "status": "dandi:OpenAccess"}]
    out["path"] = a.path
    out["identifier"] = a.asset_id
    out["contentUrl"] = [f"{site.api_url}/assets/{a.asset_id}/download/",
                         asset_content_url(site, a)]
    out["contentSize"] = a.size
    out["digest"] = asset_digest(a)
    out["@context"] = CONTEXT_URL
    if a.zarr is not None:
        out["encodingFormat"] = "application/x-zarr"
    if a.published is not None:
        out["publishedBy"] = _publish_activity(site, a.published)
        out["datePublished"] = a.published.date.isoformat()
    return out


def asset_item(site: Site, a: Asset, with_metadata: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "asset_id": a.asset_id,
        "blob": a.blob.blob_id if a.blob is not None else None,
        "zarr": a.zarr.zarr_id if a.zarr is not None else None,
        "path": a.path,
        "size": a.size,
        "created": drf_time(a.created),
        "modified": drf_time(a.modified),
    }
    if with_metadata:
        out["metadata"] = asset_metadata(site, a)
    return out


# --------------------------------------------------------------------------- zarr


def zarr_json(z: Zarr) -> dict[str, Any]:
    return {
        "name": z.name,
        "dandiset": z.dandiset_id,
        "zarr_id": z.zarr_id,
        "status": z.status,
        "checksum": z.checksum,
        "file_count": z.file_count,
        "size": z.size,
    }


def zarr_file_entry(z: Zarr, i: int) -> dict[str, Any]:
    e = z.entries
    return {
        "Key": e.keys[i],
        "LastModified": str_time(z.modified),
        "ETag": e.etag_for(i),
        "Size": e.served_size(i),
    }


# --------------------------------------------------------------------------- info


def server_info(site: Site) -> dict[str, Any]:
    """``GET /api/info/``; ``services.webui`` is left out: the test archive has no web UI."""
    return {
        "instance_config": {
            "instance_name": site.instance_name,
            "instance_identifier": site.instance_identifier,
            "instance_url": site.gui_url + "/",
            "doi_prefix": site.doi_prefix,
            "licenses": ["spdx:CC0-1.0", "spdx:CC-BY-4.0"],
        },
        "schema_version": SCHEMA_VERSION,
        "schema_url": f"{site.api_url}/schemas/?model=Dandiset",
        "allowed_schema_versions": ALLOWED_SCHEMA_VERSIONS,
        "version": site.server_version,
        "services": {
            "api": {"url": site.api_url},
            "jupyterhub": {"url": "https://hub.dandiarchive.org/"},
        },
        "cli-minimal-version": site.cli_minimal_version,
        "cli-requires-python": ">=3.10",
        "cli-bad-versions": [],
    }
