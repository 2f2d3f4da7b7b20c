"""Auth, per-user isolation, rate limits (memory and Redis), concurrency cap, headers, CORS."""
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time

import anthropic
import jwt
import openai
import pytest
import requests
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.server import ROOT, start_server, stop_server

pytestmark = pytest.mark.slow

SECRET = "test-secret-that-is-long-enough-for-hs256!"
AUD = "rill-tests"


def token(sub="alice", key=SECRET, alg="HS256", ttl=600, **claims):
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + ttl, "aud": AUD, **claims}, key, algorithm=alg)


def bearer(tok):
    return {"Authorization": f"Bearer {tok}"}


@pytest.fixture(scope="module")
def rsa_keys():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return pem, public


@pytest.fixture(scope="module")
def hs_server(tmp_path_factory):
    """Auth on (HS256), and low limits so they can be hit."""
    srv = start_server("eventlet", tmp_path_factory.mktemp("hs"), RILL_JWT_SECRET=SECRET, RILL_JWT_AUDIENCE=AUD,
                       RILL_RATE_LIMIT="3 per minute", RILL_MAX_CONCURRENT_TURNS=1, RILL_ADMIN_USERS="root-user",
                       RILL_CORS_ORIGINS="http://good.example")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def rs_server(tmp_path_factory, rsa_keys):
    srv = start_server("threading", tmp_path_factory.mktemp("rs"), RILL_JWT_PUBLIC_KEY=rsa_keys[1],
                       RILL_JWT_AUDIENCE=AUD)
    yield srv
    stop_server(srv)


def chat(srv, tok=None, **body):
    return requests.post(f"{srv.url}/api/chat", json={"message": "hi", "model": "scripted/echo", **body},
                         headers=bearer(tok) if tok else {}, timeout=30)


# --- tokens ---------------------------------------------------------------------------------

def bad_tokens(rsa_private=None, rsa_public=None):
    now = int(time.time())
    cases = {
        "forged signature": token(key="another-secret-that-is-also-long-enough!!"),
        "expired": token(iat=now - 7200, ttl=-3600),
        "not yet valid": token(nbf=now + 3600),
        "alg none": jwt.encode({"sub": "alice", "exp": now + 600, "aud": AUD}, None, algorithm="none"),
        "wrong audience": token(aud="someone-else"),
        "no exp": jwt.encode({"sub": "alice", "aud": AUD}, SECRET, algorithm="HS256"),
        "garbage": "not.a.token",
    }
    return cases


@pytest.mark.parametrize("case", list(bad_tokens()))
def test_bad_tokens_are_401_with_a_reason(hs_server, case):
    r = chat(hs_server, bad_tokens()[case])
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert r.json()["error"]["message"]


def test_reasons_are_specific(hs_server):
    cases = bad_tokens()
    words = {"expired": "expired", "not yet valid": "not valid yet", "wrong audience": "audience",
             "forged signature": "signature", "no exp": "'exp'", "alg none": "algorithm"}
    for case, word in words.items():
        assert word in chat(hs_server, cases[case]).json()["error"]["message"], case


def test_hs_rs_confusion_is_refused(rs_server, rsa_keys):
    private, public = rsa_keys
    assert chat(rs_server, token(key=private, alg="RS256")).status_code == 200
    # The classic attack: sign HS256 with the server's public key as the HMAC secret (by hand:
    # PyJWT itself refuses a PEM key as an HMAC secret).
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    now = int(time.time())
    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + b"." + b64(
        json.dumps({"sub": "mallory", "exp": now + 600, "aud": AUD}).encode())
    signature = b64(hmac.new(public.encode(), signing_input, hashlib.sha256).digest())
    r = chat(rs_server, (signing_input + b"." + signature).decode())
    assert r.status_code == 401 and "algorithm" in r.json()["error"]["message"]
    assert chat(rs_server, token()).status_code == 401  # an HS256 token at an RS256 server


def test_every_protected_route_needs_a_token(hs_server):
    for method, path in [("POST", "/api/chat/stream"), ("POST", "/api/chat"), ("GET", "/api/chat/sessions"),
                         ("POST", "/api/chat/sessions"), ("GET", "/api/chat/sessions/x"), ("GET", "/api/models"),
                         ("POST", "/api/models/load"), ("POST", "/api/chat/turns/x/cancel")]:
        r = requests.request(method, hs_server.url + path, json={}, timeout=10)
        assert r.status_code == 401 and "missing token" in r.json()["error"]["message"], path
    assert requests.get(f"{hs_server.url}/health", timeout=10).status_code == 200


def test_v1_errors_and_sdk_exceptions(hs_server):
    with pytest.raises(openai.AuthenticationError) as err:
        openai.OpenAI(base_url=f"{hs_server.url}/v1", api_key="wrong", max_retries=0).chat.completions.create(
            model="scripted/echo", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=hs_server.url, api_key="wrong", max_retries=0).messages.create(
            model="scripted/echo", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    good = token("v1-user")
    reply = openai.OpenAI(base_url=f"{hs_server.url}/v1", api_key=good, max_retries=0).chat.completions.create(
        model="scripted/echo", messages=[{"role": "user", "content": "via openai"}])
    assert reply.choices[0].message.content == "via openai "
    message = anthropic.Anthropic(base_url=hs_server.url, api_key=good, max_retries=0).messages.create(
        model="scripted/echo", max_tokens=5, messages=[{"role": "user", "content": "via x-api-key"}])
    assert message.content[0].text == "via x-api-key "


def test_socketio_connect_needs_a_valid_token(hs_server):
    for auth in (None, {"token": "nope"}, {"token": bad_tokens()["expired"]}):
        client = socketio.Client(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            client.connect(hs_server.url, transports=["websocket"], auth=auth, wait_timeout=10)
    client = socketio.Client(reconnection=False)
    client.connect(hs_server.url, transports=["websocket"], auth={"token": token("socket-user")}, wait_timeout=10)
    assert client.call("chat_stream", {"message": "hi", "model": "scripted/echo"}, timeout=10)["turn_id"]
    client.disconnect()


def test_cli_mints_a_token_the_server_accepts(hs_server):
    out = subprocess.run([sys.executable, "-m", "flask", "--app", "rill", "rill", "token", "carol", "--ttl", "10m"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"RILL_JWT_SECRET": SECRET, "RILL_JWT_AUDIENCE": AUD, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    minted = out.stdout.strip().splitlines()[-1]
    claims = jwt.decode(minted, SECRET, algorithms=["HS256"], audience=AUD)
    assert claims["sub"] == "carol" and 590 <= claims["exp"] - claims["iat"] <= 600
    assert chat(hs_server, minted).status_code == 200


# --- isolation ------------------------------------------------------------------------------

def test_sessions_are_private_to_their_user(hs_server):
    alice, bob = token("iso-alice"), token("iso-bob")
    sid = chat(hs_server, alice).json()["session_id"]
    assert requests.get(f"{hs_server.url}/api/chat/sessions/{sid}", headers=bearer(bob), timeout=10).status_code == 404
    assert requests.delete(f"{hs_server.url}/api/chat/sessions/{sid}", headers=bearer(bob), timeout=10).status_code == 404
    r = chat(hs_server, bob, session_id=sid)
    assert r.status_code == 404 and r.json()["error"]["type"] == "session_not_found"
    assert requests.get(f"{hs_server.url}/api/chat/sessions", headers=bearer(bob), timeout=10).json()["sessions"] == []
    mine = requests.get(f"{hs_server.url}/api/chat/sessions/{sid}", headers=bearer(alice), timeout=10)
    assert mine.status_code == 200 and len(mine.json()["messages"]) == 2


# --- limits ---------------------------------------------------------------------------------

def test_rate_limit_on_sse_with_retry_after(hs_server):
    tok = token("limit-sse")
    statuses = []
    for _ in range(4):
        r = requests.post(f"{hs_server.url}/api/chat/stream", json={"message": "hi", "model": "scripted/echo"},
                          headers=bearer(tok), timeout=30)
        statuses.append(r.status_code)
    assert statuses == [200, 200, 200, 429]
    assert int(r.headers["Retry-After"]) > 0 and r.json()["error"]["type"] == "rate_limit_error"


def test_rate_limit_on_v1_in_each_protocols_shape(hs_server):
    tok = token("limit-v1")
    oai = openai.OpenAI(base_url=f"{hs_server.url}/v1", api_key=tok, max_retries=0)
    ant = anthropic.Anthropic(base_url=hs_server.url, api_key=tok, max_retries=0)
    for _ in range(3):
        oai.chat.completions.create(model="scripted/echo", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as err:
        oai.chat.completions.create(model="scripted/echo", messages=[{"role": "user", "content": "hi"}])
    assert err.value.response.headers["Retry-After"] and err.value.body["type"] == "rate_limit_error"
    with pytest.raises(anthropic.RateLimitError) as err:  # the same budget
        ant.messages.create(model="scripted/echo", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["error"]["type"] == "rate_limit_error"


def test_rate_limit_on_socketio_shares_the_budget(hs_server):
    tok = token("limit-socket")
    assert chat(hs_server, tok).status_code == 200
    client = socketio.Client(reconnection=False)
    client.connect(hs_server.url, transports=["websocket"], auth={"token": tok}, wait_timeout=10)
    try:
        acks = []
        for _ in range(3):
            acks.append(client.call("chat_stream", {"message": "hi", "model": "scripted/echo"}, timeout=10))
            time.sleep(0.3)  # let the turn finish: one turn per connection
        assert "turn_id" in acks[0] and acks[1]["turn_id"]
        assert acks[2]["error"]["type"] == "rate_limit_error" and acks[2]["error"]["retry_after"] > 0
        assert client.connected
    finally:
        client.disconnect()


def test_concurrent_turns_per_user_are_capped(hs_server):
    tok = token("limit-concurrency")
    with requests.post(f"{hs_server.url}/api/chat/stream", json={"message": "x", "model": "scripted/slow"},
                       headers=bearer(tok), stream=True, timeout=30) as slow:
        assert slow.status_code == 200
        second = chat(hs_server, tok)
        assert second.status_code == 429 and second.json()["error"]["type"] == "too_many_turns"
        assert b"event: done" in slow.content  # the slow turn completes
    assert chat(hs_server, tok).status_code == 200


def test_rate_limits_can_live_in_redis(redis_server, tmp_path):
    url, client = redis_server.url, redis_server.client
    srv = start_server("eventlet", tmp_path, RILL_RATE_LIMIT="2 per minute", RILL_RATE_LIMIT_STORAGE=url)
    try:
        statuses = [chat(srv).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert any(b"chat" in key for key in client.keys("*"))  # the counters are in Redis
    finally:
        stop_server(srv)


# --- headers and CORS -----------------------------------------------------------------------

def test_security_headers(hs_server):
    for path in ("/health", "/"):
        r = requests.get(hs_server.url + path, timeout=10)
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer" and r.headers["X-Frame-Options"] == "DENY"


def test_cors_is_closed_by_default_and_opens_to_the_allow_list(hs_server, tmp_path):
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    r = requests.options(f"{hs_server.url}/api/chat", headers=preflight, timeout=10)
    assert "Access-Control-Allow-Origin" not in r.headers
    srv = start_server("eventlet", tmp_path, RILL_CORS_ORIGINS="http://good.example")
    try:
        good = requests.options(f"{srv.url}/api/chat", headers={**preflight, "Origin": "http://good.example"},
                                timeout=10)
        assert good.headers["Access-Control-Allow-Origin"] == "http://good.example"
        evil = requests.options(f"{srv.url}/api/chat", headers=preflight, timeout=10)
        assert "Access-Control-Allow-Origin" not in evil.headers
    finally:
        stop_server(srv)


def test_only_admins_load_models_when_auth_is_on(hs_server):
    load = lambda who: requests.post(f"{hs_server.url}/api/models/load", json={"path": "/no/such/model"},  # noqa: E731
                                     headers=bearer(token(who)), timeout=10)
    r = load("alice")
    assert r.status_code == 403 and "RILL_ADMIN_USERS" in r.json()["error"]["message"]
    assert load("root-user").status_code == 400  # let in; the path itself is refused


def test_cors_preflight_needs_no_token(hs_server):
    r = requests.options(f"{hs_server.url}/api/chat/stream", timeout=10, headers={
        "Origin": "http://good.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "http://good.example"
    assert "authorization" in r.headers["Access-Control-Allow-Headers"].lower()


def test_socketio_accepts_its_own_page_and_the_allow_list_only(hs_server):
    # The Engine.IO handshake is where the origin is checked (the python client would add its own
    # Origin header beside a custom one, so ask by hand).
    for origin, ok in ((hs_server.url, True), ("http://good.example", True), ("http://evil.example", False)):
        r = requests.get(f"{hs_server.url}/socket.io/?EIO=4&transport=polling", headers={"Origin": origin},
                         timeout=10)
        assert (r.status_code == 200) == ok, (origin, r.status_code, r.text)
