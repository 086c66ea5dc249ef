"""A subject's erasure (tenant admins): every session they own deleted, as a job to follow."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from api.deps import ActivePolicyDep, AdminPrincipal, ClientsDep
from api.openapi import V1_PROBLEMS, problems
from api.schemas.erasure import ErasureBody, ErasureJob
from api.session_erasure import erasure_status, start_erasure
from workflows.erasure.types import ErasureProgress

router = APIRouter(prefix="/v1/erasure", tags=["erasure"], responses=V1_PROBLEMS)
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="the job's id")]


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses=problems(400, 413, 422))
async def erase_subject(
    body: ErasureBody,
    principal: AdminPrincipal,
    clients: ClientsDep,
    policy: ActivePolicyDep,
    response: Response,
) -> ErasureJob:
    """Delete every session `subject` owns in the tenant; answers at once with the job,
    whose status `GET /v1/erasure/{job_id}` reads."""
    job = uuid.uuid4().hex
    await start_erasure(clients, principal, policy, job, subject=body.subject)
    response.headers["Location"] = f"/v1/erasure/{job}"
    return ErasureJob.of(job, "running", ErasureProgress())


@router.get("/{job_id}", responses=problems(404, 422))
async def erasure_job(job_id: JobId, principal: AdminPrincipal, clients: ClientsDep) -> ErasureJob:
    job_status, progress = await erasure_status(clients, principal.tenant, job_id)
    return ErasureJob.of(job_id, job_status, progress)
