"""A property-based fuzz of the API against its own description (docs/openapi.json):
Schemathesis generates requests for every operation of the committed document (which
tests/test_openapi.py keeps equal to what the API serves) and sends them to the running
API with a real admin token. Whatever it sends, the API answers without a
5xx and with a response the document describes (status, content type, body schema).

Bodies that validate take real turns, so examples per operation are few and bounded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from core.settings import Settings
from core.tokens import mint_token

schema = schemathesis.openapi.from_path(Path(__file__).parent.parent / "docs" / "openapi.json")


@pytest.fixture
def admin_token(settings: Settings) -> str:
    # Its own tenant, so the fuzz's turns and limits touch no other test's.
    return mint_token(settings, tenant="fuzz", roles=["admin"])


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure reproduces
    suppress_health_check=list(HealthCheck),
)
def test_any_request_gets_a_described_answer_and_never_a_5xx(
    case: schemathesis.Case, admin_token: str, api_url: str
) -> None:
    case.call_and_validate(
        base_url=api_url,
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=60,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
