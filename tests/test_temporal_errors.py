"""Temporal's refusals in the API's terms: what a client can retry is a 503, never a 500."""

from __future__ import annotations

import pytest
from temporalio.service import RPCError, RPCStatusCode

from api.temporal_errors import temporal_errors
from core.errors import DependencyUnavailable


@pytest.mark.parametrize(
    "status",
    [RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED],
)
def test_temporal_out_of_reach_or_over_capacity_is_a_503_to_retry(status: RPCStatusCode) -> None:
    with pytest.raises(DependencyUnavailable) as raised, temporal_errors("session s1"):
        raise RPCError("namespace rate limit exceeded", status, b"")
    problem = raised.value.problem("0" * 32)
    assert problem["status"] == 503 and problem["dependency"] == "temporal"
    assert "retry in a moment" in problem["detail"]
