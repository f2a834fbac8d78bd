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
        assert guarded.get(path).status_code == 404, path
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
