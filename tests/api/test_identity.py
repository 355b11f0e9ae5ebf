"""Who may call the API at all: bearer tokens, deactivation, `me`."""

from __future__ import annotations

from tests.api.conftest import Account, Api, MakeUser
from tests.server import LiveServer


def test_me_answers_for_the_token_holder(api: Api, admin: Account) -> None:
    data = api.data("{ me { name premium deactivated securityRoles } }", as_=admin)
    assert data["me"] == {
        "name": "admin",
        "premium": True,
        "deactivated": False,
        "securityRoles": ["SYSTEM_ADMINISTRATOR"],
    }


def test_requests_without_a_valid_token_get_401(server: LiveServer) -> None:
    assert server.post("{ me { name } }").status_code == 401
    assert server.post("{ me { name } }", token="not-a-token").status_code == 401
    assert server.post("{ me { name } }", token="mgk_unknown-machine-key").status_code == 401


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
    assert server.post("{ me { name } }", token=dana.token).status_code == 401
