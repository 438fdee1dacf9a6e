"""A property-based fuzz of the API from its own OpenAPI schema (schemathesis): no 5xx, and
no response that breaks the schema, for generated valid and invalid requests."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from .conftest import Server


@pytest.fixture(scope="module")
def api_schema(server: Server, alice: str) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(server.url + "/api/v1/openapi.json")
    schema.config.base_url = server.url  # type: ignore[misc]
    with httpx.Client(base_url=server.url + "/api/v1",
                      headers={"Authorization": f"Bearer {alice}"}) as c:
        c.post("/folders", json={"path": "/alice/fuzz"})
    schema.config.headers = {"Authorization": f"Bearer {alice}"}  # type: ignore[misc]
    return schema


fuzz = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow
@fuzz.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_responses_match_the_schema(case: schemathesis.Case,
                                                         alice: str) -> None:
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {alice}"}
    case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])
