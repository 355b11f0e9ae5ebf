"""Fuzzing with schemathesis in GraphQL mode against the running service.

schemathesis reads the schema by introspection from the live server and generates
queries and mutations for every root field, valid ones and invalid ones, sent with an
administrator's token so that they reach the resolvers. Whatever it sends, no answer
may be a server error (HTTP 5xx) or an unexpected exception, masked or not: every
GraphQL error must be a rule's answer (it carries the rule's code) or GraphQL's own
refusal of the document (syntax, validation, limits: such errors have no path).

(schemathesis's pytest integration does not run on pytest 9 yet, so the test drives
its Hypothesis strategies itself, one operation after another.)
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.graphql import from_url

from app.domain.enums import ErrorCode
from tests.api.hardening_helpers import admin_token
from tests.server import LiveServer

# Per operation (some 40 queries and mutations): the whole fuzz stays well under a minute.
EXAMPLES = 20
RULE_CODES = {code.value for code in ErrorCode}


def unexpected(error: dict[str, Any]) -> bool:
    """An error that is neither a rule's answer nor GraphQL's refusal of the document."""
    code = (error.get("extensions") or {}).get("code")
    if code == "INTERNAL_SERVER_ERROR":
        return True  # masked, so nothing leaked; but it is a bug all the same
    return "path" in error and code not in RULE_CODES


def check(response: requests.Response, sent: Any) -> None:
    """The answer to one generated request is a GraphQL answer, without server errors."""
    assert response.status_code < 500, (sent, response.status_code, response.text)
    body = response.json()
    assert isinstance(body, dict), (sent, body)
    leaked = [error for error in body.get("errors") or [] if unexpected(error)]
    assert not leaked, (sent, leaked)


@pytest.fixture
def headers(server: LiveServer) -> dict[str, str]:
    """A valid administrator's bearer token, so generated requests reach the resolvers."""
    return {"Authorization": f"Bearer {admin_token(server)}"}


def test_no_generated_request_makes_a_server_error(
    server: LiveServer, headers: dict[str, str]
) -> None:
    schema = from_url(server.url, headers=headers, timeout=30)
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(operations) > 30  # every query and mutation field
    session = requests.Session()

    for operation in operations:
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,  # no example files left in the work tree
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases)
        def fuzz(case: Any) -> None:
            response = case.call(base_url=server.url, session=session, headers=headers)
            check(response, case.body)

        fuzz()
