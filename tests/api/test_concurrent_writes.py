"""Writers racing for one name: one wins, the others get CONFLICT, nobody a server error."""

from __future__ import annotations

import threading
from typing import Any

from tests.api.conftest import Account, Api
from tests.databases import POSTGRES_URL

CREATE = """
mutation($name: String!) {
  createMachineGroup(input: {name: $name}) { machineGroup { id } errors { code } }
}"""


def test_concurrent_creates_of_one_name_let_exactly_one_win(api: Api, admin: Account) -> None:
    racers = 8
    start = threading.Barrier(racers)
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def race(index: int) -> None:
        start.wait()
        payload = api.mutate(CREATE, {"name": f"Finance BOTS{' ' * (index % 2)}"}, as_=admin)
        with lock:
            results.append(payload)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    codes = sorted(str(p["errors"][0]["code"]) if p["errors"] else "OK" for p in results)
    assert codes == ["CONFLICT"] * (racers - 1) + ["OK"]
    total = api.data("{ machineGroups { totalCount } }", as_=admin)["machineGroups"]["totalCount"]
    assert total == 1


def test_text_with_a_nul_character_is_refused_clearly(api: Api, admin: Account) -> None:
    # PostgreSQL cannot hold NUL in text: refused as VALIDATION before it reaches the
    # driver. SQLite can, so there the id simply names nothing.
    expected = "VALIDATION" if POSTGRES_URL else "NOT_FOUND"
    removed = api.mutate(
        "mutation($m: ID!) { removeMachineFromGroup(machineId: $m) { errors { code } } }",
        {"m": "abc\x00def"},
        as_=admin,
    )
    assert [error["code"] for error in removed["errors"]] == [expected]
    body = api.execute("query($g: ID!) { machineGroup(id: $g) { id } }", {"g": "\x00"}, as_=admin)
    if POSTGRES_URL:
        assert body["errors"][0]["extensions"]["code"] == "VALIDATION"
    else:
        assert body == {"data": {"machineGroup": None}}
