"""The console's files and GraphiQL's page are served by the app, with a strict
Content-Security-Policy, and load nothing from another host."""

from __future__ import annotations

import re

from tests.server import LiveServer


def _base(server: LiveServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def _directives(policy: str) -> dict[str, list[str]]:
    return {
        name: values
        for name, *values in (part.split() for part in policy.split(";") if part.strip())
    }


def test_the_root_sends_a_browser_to_the_console(server: LiveServer) -> None:
    response = server.http.get(_base(server) + "/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/console/"


def test_console_pages_allow_scripts_and_connections_from_this_server_only(
    server: LiveServer,
) -> None:
    response = server.http.get(_base(server) + "/console/")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    policy = _directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    # 'self' and the hash of the one inline element, the import map: no 'unsafe-inline'.
    assert policy["script-src"][0] == "'self'"
    assert all(source.startswith("'sha256-") for source in policy["script-src"][1:])
    assert len(policy["script-src"]) == 2
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'", f"ws://127.0.0.1:{server.port}"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert response.headers["x-content-type-options"] == "nosniff"
    inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", response.text)
    assert inline == [' type="importmap"']

    script = server.http.get(_base(server) + "/console/js/main.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "content-security-policy" in script.headers


def test_graphiql_is_served_from_the_vendored_files(server: LiveServer) -> None:
    response = server.http.get(server.url, headers={"Accept": "text/html"})
    assert response.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert sources, response.text
    assert all(source.startswith("/console/") for source in sources), sources
    for source in sources:
        assert server.http.get(_base(server) + source).status_code == 200, source
    policy = _directives(response.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]
    assert "unpkg" not in response.text and "cdn" not in response.text.lower()


def test_a_host_header_that_is_not_a_plain_host_is_not_echoed(server: LiveServer) -> None:
    response = server.http.get(
        _base(server) + "/console/", headers={"Host": "evil.example; script-src *"}
    )
    policy = _directives(response.headers["content-security-policy"])
    assert policy["connect-src"] == ["'self'"]
