"""The API description a client can trust: committed, current, valid, and usable as is."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from api.app import create_app
from api.openai.errors import speaks_openai
from api.openapi import SSE_EVENTS
from core.settings import Settings

COMMITTED = Path(__file__).parent.parent / "docs" / "openapi.json"
PROBLEM_STATUSES = {"401", "403", "409", "503"}


@pytest.fixture(scope="module")
def document(settings: Settings) -> dict[str, Any]:
    return create_app(settings).openapi()


def test_the_committed_document_is_the_api_s(document: dict[str, Any]) -> None:
    committed = json.loads(COMMITTED.read_text())
    assert committed == document, "stale: run `python -m api.openapi > docs/openapi.json`"


def test_it_is_a_valid_openapi_document(document: dict[str, Any]) -> None:
    validate(document)


def test_every_v1_operation_needs_a_bearer_token_and_answers_problems(
    document: dict[str, Any],
) -> None:
    scheme = document["components"]["securitySchemes"]["HTTPBearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not path.startswith("/v1"):
                assert "security" not in operation, (method, path)
                continue
            assert operation["security"] == [{"HTTPBearer": []}], (method, path)
            responses = operation["responses"]
            assert set(responses) >= PROBLEM_STATUSES, (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")) and speaks_openai(path):  # OpenAI's shape
                    media = response["content"]["application/json"]
                    assert media["schema"] == {"$ref": "#/components/schemas/OpenAIError"}
                    assert {"message", "type", "code"} <= set(media["example"]["error"])
                elif status.startswith(("4", "5")):
                    media = response["content"]["application/problem+json"]
                    assert media["schema"] == {"$ref": "#/components/schemas/Problem"}
                    assert media["example"]["status"] == int(status)


def test_the_stream_routes_name_their_events(document: dict[str, Any]) -> None:
    media = document["paths"]["/v1/conversation/stream"]["post"]["responses"]["200"]["content"]
    events = media["text/event-stream"]["schema"]["properties"]["event"]["enum"]
    assert events == list(SSE_EVENTS)


def test_a_client_generated_from_it_takes_a_turn(
    tmp_path: Path, api_url: str, token: Callable[..., str]
) -> None:
    generator = Path(sys.executable).parent / "openapi-python-client"
    package = tmp_path / "orchestrator_client"
    subprocess.run(
        [str(generator), "generate", "--path", str(COMMITTED), "--output-path", str(package)]
        + ["--meta", "none"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    sys.path.insert(0, str(tmp_path))
    try:
        client_module = importlib.import_module("orchestrator_client.client")
        step = importlib.import_module(
            "orchestrator_client.api.conversations.step_v1_conversation_step_post"
        )
        models = importlib.import_module("orchestrator_client.models")
    finally:
        sys.path.remove(str(tmp_path))
    client = client_module.AuthenticatedClient(
        base_url=api_url, token=token("acme", "user"), timeout=120
    )
    with client:
        response = step.sync_detailed(client=client, body=models.StepRequest(message="Say hi."))
        assert response.status_code == 200, response.content
        assert response.parsed.turn == 1 and response.parsed.reply
        refused = step.sync_detailed(
            client=client_module.AuthenticatedClient(base_url=api_url, token="not-a-jwt"),
            body=models.StepRequest(message="Say hi."),
        )
        assert refused.status_code == 401
        assert json.loads(refused.content)["code"] == "unauthenticated"
