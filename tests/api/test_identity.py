"""Who may call the API at all: bearer tokens, deactivation, `me`; each refusal says why."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.db.models import User
from app.domain.identity import Refusal, mint_token
from tests.api.conftest import Account, Api, MakeUser
from tests.server import LiveServer

OTHER_KEY = "another-servers-key-0123456789abcdef0123456789"
CHALLENGE = 'Bearer realm="machine-groups"'


def test_me_answers_for_the_token_holder(api: Api, admin: Account) -> None:
    data = api.data("{ me { name premium deactivated securityRoles } }", as_=admin)
    assert data["me"] == {
        "name": "admin",
        "premium": True,
        "deactivated": False,
        "securityRoles": ["SYSTEM_ADMINISTRATOR"],
    }


def unauthorized(response: httpx.Response) -> tuple[str, str, str]:
    """(code, message, WWW-Authenticate) of an HTTP 401 with a GraphQL error body."""
    assert response.status_code == 401, response.text
    (error,) = response.json()["errors"]
    return error["extensions"]["code"], error["message"], response.headers["www-authenticate"]


def _token(server: LiveServer, admin: Account, case: str) -> str:
    """A token of each kind a server refuses."""
    admin_user = User(id=admin.id, name=admin.name, name_key=admin.name)
    now = datetime.now(UTC)
    other = dataclasses.replace(server.settings, secret_keys=(OTHER_KEY,))
    stranger = User(id="no-such-user", name="stranger", name_key="stranger")
    makers: dict[str, Callable[[], str]] = {
        "malformed": lambda: "not-a-token",
        "expired": lambda: mint_token(server.settings, admin_user, now - timedelta(days=31)),
        "signature": lambda: mint_token(other, admin_user, now),
        "unknown user": lambda: mint_token(server.settings, stranger, now),
        "unknown machine": lambda: "mgk_unknown-machine-key",
    }
    return makers[case]()


@pytest.mark.parametrize(
    ("case", "refusal"),
    [
        ("malformed", Refusal.MALFORMED),
        ("expired", Refusal.EXPIRED),
        ("signature", Refusal.BAD_SIGNATURE),
        ("unknown user", Refusal.UNKNOWN_USER),
        ("unknown machine", Refusal.UNKNOWN_MACHINE),
    ],
)
def test_each_invalid_token_gets_401_saying_which_case_and_what_to_do(
    server: LiveServer, admin: Account, case: str, refusal: Refusal
) -> None:
    code, message, challenge = unauthorized(
        server.post("{ me { name } }", token=_token(server, admin, case))
    )
    assert code == refusal.code
    assert message == refusal.message
    # RFC 6750 section 3: the error and its description ride in the challenge too.
    assert challenge == (
        f'{CHALLENGE}, error="invalid_token", error_description="{refusal.message}"'
    )
    if case != "unknown machine":
        assert "`machine-groups token NAME`" in message


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dXNlcjpwYXNz"}],
    ids=["no header", "another scheme"],
)
def test_a_request_without_a_bearer_token_gets_the_bare_challenge(
    server: LiveServer, headers: dict[str, str]
) -> None:
    response = server.http.post(server.url, json={"query": "{ me { name } }"}, headers=headers)
    code, message, challenge = unauthorized(response)
    # RFC 6750 section 3.1: a request with no authentication gets no error code.
    assert (code, challenge) == ("TOKEN_MISSING", CHALLENGE)
    assert message == (
        "no bearer token was sent: send the header `Authorization: Bearer <token>`;"
        " `machine-groups token NAME`, run with the server's settings, prints one"
    )


def test_a_bearer_header_without_a_token_is_malformed(server: LiveServer) -> None:
    response = server.http.post(
        server.url, json={"query": "{ me { name } }"}, headers={"Authorization": "Bearer"}
    )
    assert unauthorized(response)[0] == "TOKEN_MALFORMED"


def test_a_deactivated_users_token_stops_working_at_once(
    api: Api, admin: Account, make_user: MakeUser, server: LiveServer
) -> None:
    dana = make_user()
    assert api.data("{ me { name } }", as_=dana)["me"]["name"] == dana.name
    api.ok(
        "mutation($id: ID!) { deactivateUser(userId: $id) {"
        " user { deactivated } errors { code } } }",
        {"id": dana.id},
        as_=admin,
    )
    code, message, _ = unauthorized(server.post("{ me { name } }", token=dana.token))
    assert code == "TOKEN_USER_DEACTIVATED"
    assert message == Refusal.DEACTIVATED.message
