"""Usage accounting: one contract on memory, SQLite and Redis; prices; GET /api/usage (own usage,
admins see anyone's) with totals equal to the turns' own `done` usage; the metrics' buckets and
protection. Fast tier: the app in process with the scripted provider."""
import time
import uuid

import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rill import metrics
from rill.usage import MemoryUsage, Prices, RedisUsage, SQLiteUsage, TurnUsage, day_of, days_back, report

SECRET = "usage-tests-secret-that-is-long-enough-for-hs256"
DAY = 86400


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "memory":
        return MemoryUsage()
    if request.param == "redis":
        return RedisUsage(request.getfixturevalue("redis_server").client, prefix=f"test:{uuid.uuid4().hex}:")
    return SQLiteUsage(tmp_path / "usage.db")


def test_the_store_sums_by_day_user_and_model(store):
    now = time.time()
    for user, model, prompt, completion, days_ago in [
        ("alice", "local/m", 10, 20, 0), ("alice", "local/m", 1, 2, 0), ("alice", "openai/x", 5, 5, 0),
        ("bob", "local/m", 100, 200, 0), ("alice", "local/m", 7, 7, 3), ("alice", "local/m", 9, 9, 40),
    ]:
        store.record(TurnUsage(user, model, prompt, completion, 1000.5, now - days_ago * DAY))
    since = days_back(30, now)[0]
    today, three_ago = day_of(now), day_of(now - 3 * DAY)
    assert store.totals(since, "alice") == [
        {"day": three_ago, "user": "alice", "model": "local/m", "turns": 1, "prompt_tokens": 7,
         "completion_tokens": 7, "duration_ms": 1000.5},
        {"day": today, "user": "alice", "model": "local/m", "turns": 2, "prompt_tokens": 11,
         "completion_tokens": 22, "duration_ms": 2001.0},
        {"day": today, "user": "alice", "model": "openai/x", "turns": 1, "prompt_tokens": 5,
         "completion_tokens": 5, "duration_ms": 1000.5},
    ]
    everyone = store.totals(since)
    assert {(r["user"], r["model"]) for r in everyone if r["day"] == today} == \
        {("alice", "local/m"), ("alice", "openai/x"), ("bob", "local/m")}
    assert store.totals(since, "carol") == []


def test_prices_give_cost_and_report_totals():
    prices = Prices('{"local/m": {"prompt": 1.0, "completion": 2.0}}')
    store = MemoryUsage()
    now = time.time()
    store.record(TurnUsage("a", "local/m", 1_000_000, 500_000, 10, now))
    store.record(TurnUsage("a", "other/x", 3, 4, 10, now))
    body = report(store, prices, 7, "a", now)
    assert [r["cost"] for r in body["rows"]] == [2.0, None]
    assert body["totals"] == {"turns": 2, "prompt_tokens": 1_000_003, "completion_tokens": 500_004,
                              "duration_ms": 20.0, "cost": 2.0}
    assert body["since"] == days_back(7, now)[0] and body["until"] == day_of(now)
    with pytest.raises(SystemExit, match="RILL_PRICES"):
        Prices("{not json")


def bearer(user: str) -> dict:
    now = int(time.time())
    return {"Authorization": "Bearer " + jwt.encode({"sub": user, "iat": now, "exp": now + 600}, SECRET,
                                                    algorithm="HS256")}


def test_usage_api_totals_equal_the_turns_done_usage_and_admins_see_everyone(make_app):
    app = make_app(jwt_secret=SECRET, admin_users="root", session_store="memory",
                   prices='{"scripted/echo": {"prompt": 2, "completion": 4}}')
    client = app.test_client()
    done = {"alice": [], "bob": []}
    for user, message in [("alice", "a b c"), ("alice", "d e"), ("bob", "f g h i")]:
        r = client.post("/api/chat", json={"message": message, "model": "scripted/echo"}, headers=bearer(user))
        done[user].append(r.get_json()["usage"])
    own = client.get("/api/usage", headers=bearer("alice")).get_json()
    assert own["user"] == "alice" and own["days"] == 30
    assert own["totals"]["turns"] == 2
    assert own["totals"]["prompt_tokens"] == sum(u["prompt_tokens"] for u in done["alice"])
    assert own["totals"]["completion_tokens"] == sum(u["completion_tokens"] for u in done["alice"])
    assert own["totals"]["cost"] == pytest.approx((own["totals"]["prompt_tokens"] * 2 +
                                                   own["totals"]["completion_tokens"] * 4) / 1e6)
    refused = client.get("/api/usage?user=bob", headers=bearer("alice"))
    assert refused.status_code == 403 and refused.get_json()["error"]["type"] == "permission_error"
    everyone = client.get("/api/usage?user=*", headers=bearer("root")).get_json()
    assert everyone["totals"]["turns"] == 3 and {r["user"] for r in everyone["rows"]} == {"alice", "bob"}
    bob = client.get("/api/usage?user=bob&days=1", headers=bearer("root")).get_json()
    assert bob["totals"]["completion_tokens"] == done["bob"][0]["completion_tokens"]
    for bad in ("0", "367", "x", "-1"):
        r = client.get(f"/api/usage?days={bad}", headers=bearer("alice"))
        assert r.status_code == 400 and "days" in r.get_json()["error"]["message"], bad
    assert client.get("/api/usage").status_code == 401


def test_histogram_buckets_cover_a_gpu_and_a_busy_cpu():
    for histogram, fastest, slowest in [(metrics.TIME_TO_FIRST_TOKEN, 0.01, 120), (metrics.E2E_LATENCY, 0.01, 600),
                                        (metrics.INTER_TOKEN_LATENCY, 0.002, 5), (metrics.QUEUE_TIME, 0.01, 120)]:
        bounds = histogram._upper_bounds
        assert bounds == sorted(bounds) and bounds[0] <= fastest and bounds[-2] >= slowest, histogram._name
        assert len([b for b in bounds if b <= 0.1]) >= 4  # a GPU's few ms apart, not all in one bucket
    assert metrics.BATCH_SIZE._upper_bounds[:-1] == [1, 2, 4, 8, 16, 32, 64, 128, 256]


def test_metrics_need_their_token_when_auth_is_on(make_app):
    open_app = make_app().test_client()
    body = open_app.get("/metrics")
    assert body.status_code == 200
    assert any(f.name == "rill_time_to_first_token_seconds" for f in text_string_to_metric_families(body.text))
    locked = make_app(jwt_secret=SECRET).test_client()
    off = locked.get("/metrics", headers=bearer("alice"))
    assert off.status_code == 404 and "RILL_METRICS_TOKEN" in off.get_json()["error"]["message"]
    guarded = make_app(jwt_secret=SECRET, metrics_token="scrape-me").test_client()
    assert guarded.get("/metrics", headers=bearer("alice")).status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200


def test_rate_limit_refusals_are_counted_by_api(make_app):
    client = make_app(rate_limit="1 per minute").test_client()

    def refusals():
        families = text_string_to_metric_families(client.get("/metrics").text)
        return sum(s.value for f in families for s in f.samples
                   if s.name == "rill_rate_limit_refusals_total" and s.labels == {"api": "openai"})

    before = refusals()
    body = {"model": "scripted/echo", "messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    assert client.post("/v1/chat/completions", json=body).status_code == 429
    assert refusals() == before + 1


def test_readyz_says_what_is_not_ready(make_app):
    client = make_app().test_client()  # the local model is not loaded in the fast tier
    r = client.get("/readyz")
    assert r.status_code == 503 and r.get_json()["checks"]["model"] == "loading"
    assert r.get_json()["checks"]["threads"] == "ok" and "model: loading" in r.get_json()["error"]["message"]
    assert client.get("/livez").status_code == 200
