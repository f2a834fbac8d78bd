"""Bearer token: required on every route but /health when set, never needed when unset, placeholders refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError


def test_no_token_needed_when_unset(client, still_serving):
    assert client.get("/model").status_code == 200
    still_serving(client)


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-token-wrong-token-wrong"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer"},
])
def test_missing_or_wrong_token_is_401(make_client, token, still_serving, headers):
    client = make_client(api_token=token)
    for method, path, body in (("post", "/score", {"user_ids": [1]}), ("get", "/model", None),
                               ("post", "/reload", None)):
        r = client.request(method, path, json=body, headers=headers)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
    still_serving(client, {"Authorization": f"Bearer {token}"})


def test_docs_are_served_only_without_a_token(make_client, token):
    guarded = make_client(api_token=token)
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert guarded.get(path).status_code == 401, path  # every path but /health needs the token
        assert guarded.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 404, path
    assert make_client().get("/openapi.json").status_code == 200


def test_the_right_token_is_accepted_and_health_needs_none(make_client, token):
    client = make_client(api_token=token)
    assert client.get("/health").status_code == 200
    assert client.get("/model", headers={"Authorization": f"Bearer {token}"}).status_code == 200


@pytest.mark.parametrize("value", ["changeme", "CHANGE_ME_PLEASE_1234", "your-token-goes-here-123",
                                   "xxxxxxxxxxxxxxxxxxxx", "secret-secret-secret", "short-random-1",
                                   "aaaaaaaaaaaaaaaa", "abababababababababab"])
def test_placeholder_or_short_tokens_are_refused(serve_settings, value):
    with pytest.raises(ValidationError, match=r"must be a random secret of at least 16 characters") as err:
        serve_settings(api_token=value)
    assert value not in str(err.value)


def test_bad_settings_in_the_environment_stop_startup_with_one_line_each(store, monkeypatch):
    from serving.app import create_app

    monkeypatch.setenv("CHURNML_SERVE_LISTS_DIR", str(store["lists"]))
    monkeypatch.setenv("CHURNML_SERVE_API_TOKEN", "changeme")
    with pytest.raises(SystemExit) as info:
        create_app()
    assert str(info.value) == ("churnml API: bad settings\nCHURNML_SERVE_API_TOKEN: must be a random secret of at "
                               "least 16 characters (e.g. `openssl rand -hex 32`); got a placeholder value")
    monkeypatch.delenv("CHURNML_SERVE_LISTS_DIR")
    monkeypatch.delenv("CHURNML_SERVE_API_TOKEN")
    monkeypatch.chdir(store["lists"])  # no .env file here
    with pytest.raises(SystemExit, match="CHURNML_SERVE_LISTS_DIR: Field required"):
        create_app()


def test_settings_come_from_the_environment(store, token, monkeypatch):
    from serving.app import ServeSettings

    monkeypatch.setenv("CHURNML_SERVE_LISTS_DIR", str(store["lists"]))
    monkeypatch.setenv("CHURNML_SERVE_API_TOKEN", token)
    monkeypatch.setenv("CHURNML_SERVE_MAX_BATCH", "50")
    s = ServeSettings()
    assert s.lists_dir == store["lists"] and s.max_batch == 50
    assert s.api_token.get_secret_value() == token and token not in repr(s)


def _asgi(app, path: str, headers: dict, chunks: list[bytes]) -> tuple[int, dict, int]:
    """Send one POST straight to the ASGI app; returns the status, the JSON body and how many body chunks
    the app read."""
    import asyncio
    import json

    read, sent = [], []

    async def receive():
        if len(read) < len(chunks):
            read.append(chunks[len(read)])
            return {"type": "http.request", "body": read[-1], "more_body": len(read) < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body), len(read)


def test_no_token_is_401_before_the_body_is_read(serve_settings, scorer, token):
    # FastAPI parses a JSON body before route dependencies run: without a gate in front, a 213 MB body
    # was parsed in full (12.9 s, +620 MB) before the 401 (#15).
    from serving.app import create_app

    app = create_app(serve_settings(api_token=token), scorer)
    chunks = [b'{"user_ids": [' + b"1," * 50_000, b"1]}"] * 1
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token-wrong"}):
        status, body, read = _asgi(app, "/score", {"Content-Type": "application/json", **headers}, chunks)
        assert status == 401 and body["detail"] == "missing or wrong bearer token"
        assert read == 0


def test_a_body_over_the_limit_is_413_unread_or_cut_off(serve_settings, scorer, token):
    from serving.app import create_app

    app = create_app(serve_settings(api_token=token, max_body_bytes=1000), scorer)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    big = b'{"user_ids": [' + b"1," * 1000 + b"1]}"
    # announced: refused from the header, nothing read
    status, body, read = _asgi(app, "/score", {**auth, "Content-Length": str(len(big))}, [big])
    assert status == 413 and read == 0
    assert f"request body of {len(big):,} bytes; at most 1,000 (CHURNML_SERVE_MAX_BODY_BYTES)" in body["detail"]
    # not announced (chunked): counted as it arrives, stopped at the first chunk past the limit
    pieces = [big[i:i + 400] for i in range(0, len(big), 400)]
    status, body, read = _asgi(app, "/score", auth, pieces)
    assert status == 413 and read == 3 < len(pieces)
    assert "more than 1,200 bytes" in body["detail"]


def test_the_default_body_limit_follows_the_batch_limit(serve_settings):
    assert serve_settings().body_limit == 1000 * 8192
    assert serve_settings(max_batch=10).body_limit == 1 << 20
    assert serve_settings(max_body_bytes=5000).body_limit == 5000


def test_a_misspelt_setting_stops_startup(store, token, monkeypatch):
    # CHURNML_SERVE_API_TOKN used to be ignored: the API then served everyone without a token.
    from serving.app import create_app

    monkeypatch.setenv("CHURNML_SERVE_LISTS_DIR", str(store["lists"]))
    monkeypatch.setenv("CHURNML_SERVE_API_TOKN", token)
    with pytest.raises(SystemExit, match=r"bad settings\nCHURNML_SERVE_API_TOKN: unknown setting \(known: "
                                         r"CHURNML_SERVE_LISTS_DIR, .*CHURNML_SERVE_API_TOKEN"):
        create_app()
