"""Fast tier: what counts as an identity, in process (the slow tier drives the real server)."""
import time

import jwt
import pytest

SECRET = "fast-tier-secret-that-is-long-enough-for-hs256"


def token(**claims):
    now = int(time.time())
    return jwt.encode({"sub": "alice", "iat": now, "exp": now + 600, **claims}, SECRET, algorithm="HS256")


@pytest.fixture
def auth_client(make_app):
    return make_app(jwt_secret=SECRET, admin_users=" root , alice,").test_client()


def sessions(client, tok):
    return client.get("/api/chat/sessions", headers={"Authorization": f"Bearer {tok}"})


@pytest.mark.parametrize("claims,words", [
    ({"sub": ""}, "'sub'"),
    ({"sub": "   "}, "'sub'"),
    ({"sub": "x" * 257}, "at most 256"),
    ({"exp": str(int(time.time()) + 600)}, "'exp' must be a number"),
    ({"exp": True}, "exp"),
    ({"nbf": str(int(time.time()))}, "'nbf' must be a number"),
    ({"iat": "yesterday"}, "iat"),
])
def test_tokens_that_name_no_real_identity_are_401(auth_client, claims, words):
    r = sessions(auth_client, token(**claims))
    assert r.status_code == 401 and r.json["error"]["type"] == "authentication_error"
    assert words in r.json["error"]["message"]


def test_a_good_token_passes_and_the_longest_sub_too(auth_client):
    assert sessions(auth_client, token()).status_code == 200
    assert sessions(auth_client, token(sub="x" * 256)).status_code == 200


def test_admin_list_ignores_spaces_and_empty_items(auth_client):
    def load(who):
        return auth_client.post("/api/models/load", json={"path": "/no/such/model"},
                                headers={"Authorization": f"Bearer {token(sub=who)}"})

    assert load("root").status_code == 400  # let in; the path itself is refused
    assert load("alice").status_code == 400
    assert load("bob").status_code == 403


def test_with_no_admins_nobody_is_one(make_app):
    client = make_app(jwt_secret=SECRET).test_client()
    r = client.post("/api/models/load", json={"path": "/tmp"}, headers={"Authorization": f"Bearer {token(sub='')}"})
    assert r.status_code == 401
    r = client.post("/api/models/load", json={"path": "/tmp"}, headers={"Authorization": f"Bearer {token()}"})
    assert r.status_code == 403


def test_only_admins_pull_or_cancel_models(auth_client):
    def call(route, body, who):
        return auth_client.post(f"/api/models/{route}", json=body, headers={"Authorization": f"Bearer {token(sub=who)}"})

    assert call("pull", {"name": "not a name"}, "alice").status_code == 400  # let in; the name is refused
    refused = call("pull", {"name": "org/repo:Q4_K_M"}, "bob")
    assert refused.status_code == 403 and "pulling models is for the users listed in RILL_ADMIN_USERS" in \
        refused.json["error"]["message"]
    assert call("cancel", {"id": "local/none"}, "root").status_code == 404
    assert call("cancel", {"id": "local/none"}, "bob").status_code == 403
