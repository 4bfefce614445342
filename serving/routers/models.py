"""What is loaded, and an admin reload (load beside, verify, warm, swap; a failure keeps the old one)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from serving.deps import Admin, RequestIdDep, ServicesDep
from serving.routers.common import ERRORS, json_response
from serving.schemas import ModelsResponse, ReloadRequest, ReloadResponse

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelsResponse, responses=ERRORS)
def models(services: ServicesDep, rid: RequestIdDep, _: Admin) -> Response:
    """Each configured model: name, alias, the version serving (trained at, features, metrics, checksum,
    source registry, disk_cache or previous_version) and the last load error."""
    return json_response({"request_id": rid, "models": services.describe()})


@router.post("/reload", response_model=ReloadResponse, responses=ERRORS)
def reload(body: ReloadRequest, services: ServicesDep, rid: RequestIdDep, _: Admin) -> Response:
    """Load the models whose alias moved (all, or ``models``); ``force`` loads again regardless.

    Outcome per model: ``loaded``, ``unchanged``, ``cached`` (registry down: the disk copy) or
    ``failed`` (with the reason; the serving version stays); a kind this service does not configure:
    ``not_configured``."""
    kinds = list(body.models) if body.models is not None else None
    unknown = sorted(set(kinds or ()) - set(services.slots))
    outcomes = services.reload(force=body.force, kinds=kinds)
    return json_response(
        {
            "request_id": rid,
            "outcomes": [o.__dict__ for o in outcomes]
            + [{"model": k, "outcome": "not_configured", "version": None, "detail": None} for k in unknown],
            "models": services.describe(),
        }
    )
