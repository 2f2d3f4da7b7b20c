"""Fast tier: media sent inline on /v1 (in process, scripted provider): a document in an OpenAI
`file` part or an Anthropic `document` block reaches the model as its text; an image reaches a
model that reads images as the bytes sent, and is a 400 `model_not_multimodal` for one that does
not, after its URL is checked: file:// is never read, and no request is made to a host
RILL_MEDIA_URL_ALLOWLIST does not name."""
import base64
import hashlib
import http.server
import threading

import pytest

from tests.test_files import pdf, png, upload
from tests.test_threads_api import HISTORY

SEES = "scripted/sees"

PAGES = ["The Rhine rises in the Alps.", "The Danube flows east."]


def data_url(data: bytes, kind: str) -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def completion(client, *parts):
    return client.post("/v1/chat/completions", json={"model": HISTORY, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "What does it say?"}, *parts]}]})


@pytest.fixture
def client(make_app):
    return make_app(max_upload_bytes=100_000).test_client()


@pytest.fixture
def media_host():
    """A loopback HTTP server with one picture (/cat.png) and a redirect to it (/moved); it
    records every path asked for."""
    asked, cat = [], png(20, 10, (10, 200, 10))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/cat.png")
                self.end_headers()
                return
            self.send_response(200 if self.path == "/cat.png" else 404)
            self.send_header("Content-Length", str(len(cat)))
            self.end_headers()
            self.wfile.write(cat)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.asked, server.cat, server.base = asked, cat, f"http://127.0.0.1:{server.server_port}"
    yield server
    server.shutdown()
    server.server_close()


def test_an_openai_file_part_reaches_the_model_as_its_text(client):
    r = completion(client, {"type": "file", "file": {"filename": "rivers.pdf", "file_data": data_url(pdf(PAGES),
                                                                                                     "application/pdf")}})
    assert r.status_code == 200, r.get_data(as_text=True)
    reply = r.get_json()["choices"][0]["message"]["content"]
    assert "rivers.pdf (PDF, 2 pages):" in reply and "--- page 2 ---\nThe Danube flows east." in reply
    uploaded = upload(client, "notes.txt", b"The Aare joins the Rhine.").get_json()["id"]
    r = completion(client, {"type": "file", "file": {"file_id": uploaded}})
    assert "notes.txt:\n```\nThe Aare joins the Rhine.\n```" in r.get_json()["choices"][0]["message"]["content"]


def test_an_anthropic_document_block_reaches_the_model_as_its_text(client):
    r = client.post("/v1/messages", json={"model": HISTORY, "max_tokens": 64, "messages": [{"role": "user", "content": [
        {"type": "document", "title": "rivers.pdf", "source": {"type": "base64", "media_type": "application/pdf",
                                                                "data": base64.b64encode(pdf(PAGES)).decode()}},
        {"type": "document", "title": "note", "source": {"type": "text", "media_type": "text/plain",
                                                          "data": "Lakes too."}},
        {"type": "text", "text": "Summarise."}]}]})
    assert r.status_code == 200, r.get_data(as_text=True)
    reply = r.get_json()["content"][0]["text"]
    assert "--- page 1 ---\nThe Rhine rises in the Alps." in reply and "note:\n```\nLakes too.\n```" in reply


@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(png(), "image/png")}}]}]}),
    ("/v1/messages", {"max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": base64.b64encode(png()).decode()}}]}]}),
])
def test_an_image_for_a_text_only_model_is_a_400_that_says_so(client, path, body):
    r = client.post(path, json={"model": HISTORY, **body})
    assert r.status_code == 400, r.get_data(as_text=True)
    error = r.get_json()["error"]  # OpenAI's shape names the refusal in `code`; Anthropic's has only its words
    assert error.get("code", "model_not_multimodal") == "model_not_multimodal"
    assert "scripted/history reads text only, and 'messages.0.content.0' is an image" in error["message"]


def test_an_image_reaches_a_model_that_reads_images_as_the_bytes_sent(client):
    """On /v1 the bytes go on as given (an upstream gets the part as sent); a file part that holds
    a picture is a picture, whatever its name."""
    sent = png(30, 20, (0, 0, 250))
    digest = hashlib.sha256(sent).hexdigest()
    openai_reply = client.post("/v1/chat/completions", json={"model": SEES, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(sent, "image/png"), "detail": "low"}},
        {"type": "text", "text": "Colour?"}]}]}).get_json()["choices"][0]["message"]["content"]
    assert f"user: Colour? ['image/png 30x20 {digest}']" in openai_reply
    anthropic_reply = client.post("/v1/messages", json={"model": SEES, "max_tokens": 64, "messages": [
        {"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": base64.b64encode(sent).decode()}},
            {"type": "text", "text": "Colour?"}]}]}).get_json()["content"][0]["text"]
    assert f"user: Colour? ['image/png 30x20 {digest}']" in anthropic_reply
    r = completion(client, {"type": "file", "file": {"filename": "scan.pdf", "file_data": data_url(sent, "application/pdf")}})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "model_not_multimodal"
    r = client.post("/v1/chat/completions", json={"model": SEES, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(b"GIF89a broken", "image/gif")}}]}]})
    assert r.status_code == 400 and "does not decode as an image" in r.get_json()["error"]["message"]


def test_no_url_is_read_from_disk_or_fetched_from_a_host_not_allowed(make_app, media_host):
    client = make_app().test_client()
    r = completion(client, {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}})
    assert r.status_code == 400 and "Rill never reads files by URL" in r.get_json()["error"]["message"]
    r = completion(client, {"type": "image_url", "image_url": {"url": f"{media_host.base}/cat.png"}})
    assert r.status_code == 400 and "RILL_MEDIA_URL_ALLOWLIST, and '127.0.0.1' is not one" in r.get_json()["error"][
        "message"]
    assert media_host.asked == []  # refused before any request
    allowed = make_app(media_url_allowlist="127.0.0.1").test_client()
    r = allowed.post("/v1/chat/completions", json={"model": SEES, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"{media_host.base}/cat.png"}}]}]})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert hashlib.sha256(media_host.cat).hexdigest() in r.get_json()["choices"][0]["message"]["content"]
    r = completion(allowed, {"type": "image_url", "image_url": {"url": f"{media_host.base}/cat.png"}})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "model_not_multimodal"  # text only: not fetched
    for path, words in [("/moved", "redirects to"), ("/gone.png", "answered HTTP 404")]:
        r = allowed.post("/v1/chat/completions", json={"model": SEES, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": f"{media_host.base}{path}"}}]}]})
        assert r.status_code == 400 and words in r.get_json()["error"]["message"], r.get_json()
    assert media_host.asked == ["/cat.png", "/moved", "/gone.png"]  # a redirect is not followed


def test_images_go_in_user_messages_and_at_most_twenty_to_a_request(client):
    picture = {"type": "image_url", "image_url": {"url": data_url(png(8, 8), "image/png")}}
    r = client.post("/v1/chat/completions", json={"model": SEES, "messages": [
        {"role": "system", "content": [picture, {"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": "Hi"}]})
    assert r.status_code == 400 and "messages.0: images go in user messages, not system ones" in r.get_json()[
        "error"]["message"]
    r = client.post("/v1/chat/completions", json={"model": SEES, "messages": [
        {"role": "user", "content": [picture] * 21}]})
    assert r.status_code == 400 and "messages.0.content.20: at most 20 images in a request" in r.get_json()[
        "error"]["message"]


def test_inline_bytes_over_the_limit_or_not_base64_are_refused(client):
    r = completion(client, {"type": "file", "file": {"file_data": data_url(b"a" * 200_000, "text/plain")}})
    assert r.status_code == 413 and "RILL_MAX_UPLOAD_BYTES (100,000 bytes)" in r.get_json()["error"]["message"]
    r = completion(client, {"type": "file", "file": {"file_data": "not base64!"}})
    assert r.status_code == 400 and "messages.0.content.1: not valid base64" in r.get_json()["error"]["message"]
    r = completion(client, {"type": "file", "file": {}})
    assert r.status_code == 400 and "give file_data (base64) or file_id" in r.get_json()["error"]["message"]


def test_models_say_what_they_read(client):
    listed = {m["id"]: m["input_modalities"] for m in client.get("/v1/models").get_json()["data"]}
    assert listed[SEES] == ["text", "image"] and listed[HISTORY] == listed["local/no-local-model"] == ["text"]
    app_listing = {m["id"]: m["input_modalities"] for p in client.get("/api/models").get_json()["providers"]
                   for m in p["models"]}
    assert app_listing == listed
