"""Writers racing for one name: one wins, the others get CONFLICT, nobody a server error."""

from __future__ import annotations

import threading
from typing import Any

from tests.api.conftest import Account, Api

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
