"""Fast tier: files sent with a question (`files: [id, ...]` on the chat routes) are `file` parts of
it, and the model gets what each becomes: a PDF's text by page under its name, a text file fenced
under its name, each cut at RILL_FILE_TOKEN_LIMIT with a note; an image is normalised once at upload
for a model that reads images, and refused for a text-only one before anything is written; a file
goes with the last message that has it."""
import hashlib
import io
import json

import pytest
from PIL import Image

from tests.test_chat_routes import SECRET
from tests.test_files import as_user, pdf, png, upload
from tests.test_threads_api import HISTORY, ask


@pytest.fixture
def app(make_app):
    return make_app(jwt_secret=SECRET, file_token_limit=200)


def stored(client, name, data, user="alice") -> str:
    r = upload(client, name, data, as_user(user))
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()["id"]


def test_a_pdf_reaches_the_model_page_by_page_under_its_name(app):
    client, alice = app.test_client(), as_user("alice")
    file_id = stored(client, "rivers.pdf", pdf(["The Rhine rises in the Alps.", "The Danube flows east.",
                                                "The Rhone ends in the Mediterranean."]))
    start, reply = ask(client, alice, message="Which river flows east?", files=[file_id])
    assert "rivers.pdf (PDF, 3 pages):" in reply
    for n, text in enumerate(["The Rhine rises in the Alps.", "The Danube flows east.",
                              "The Rhone ends in the Mediterranean."], 1):
        assert f"--- page {n} ---\n{text}" in reply
    assert reply.index("rivers.pdf") < reply.index("Which river flows east?")
    question = client.get(f"/api/threads/{start['thread_id']}", headers=alice).get_json()["messages"][0]
    assert question["parts"] == [{"type": "text", "text": "Which river flows east?"},
                                 {"type": "file", "file_id": file_id}]


def test_a_long_document_is_cut_at_the_token_limit_with_a_note(app):
    client, alice = app.test_client(), as_user("alice")
    file_id = stored(client, "long.pdf", pdf([f"Page {n} tells of river number {n}." for n in range(1, 501)]))
    _, reply = ask(client, alice, message="Summarise.", files=[file_id])
    assert "long.pdf (PDF, 500 pages):" in reply and "--- page 1 ---" in reply
    cut = int(reply.split("[truncated at page ")[1].split(" ")[0])
    assert 2 < cut < 500 and f"--- page {cut} ---" not in reply and f"--- page {cut - 1} ---" in reply
    assert "of 500: RILL_FILE_TOKEN_LIMIT is 200 tokens]" in reply


def test_a_text_file_is_fenced_under_its_name(app):
    client, alice = app.test_client(), as_user("alice")
    code = "def flow(river):\n    return f'```{river}```'\n"
    file_id = stored(client, "flow.py", code.encode())
    _, reply = ask(client, alice, message="Explain.", files=[file_id])
    assert f"flow.py:\n````\n{code.rstrip()}\n````" in reply  # a fence longer than the backticks inside


def photo(size, fmt: str, orientation: int | None = None, **save) -> bytes:
    """A picture whose left half is red and right half blue, with EXIF (a camera, a place, and an
    orientation when given)."""
    image = Image.new("RGB", size, (255, 0, 0))
    image.paste((0, 0, 255), (size[0] // 2, 0, size[0], size[1]))
    exif = Image.Exif()
    exif[0x010F] = "RiverCam"  # Make
    if orientation:
        exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, fmt, exif=exif, **save)
    return out.getvalue()


def seen(reply: str) -> list[tuple[str, int, int, str]]:
    """The images the `sees` model was shown: (type, width, height, sha256)."""
    return [(kind, *map(int, size.split("x")), sha) for kind, size, sha in
            (item.split(" ") for item in reply.split("[")[1].split("]")[0].strip("'").split("', '") if item)]


def test_an_image_is_normalised_once_for_models_and_kept_as_sent_for_its_owner(app):
    client, alice = app.test_client(), as_user("alice")
    camera = photo((3000, 2000), "JPEG", orientation=6)  # taken sideways: shown turned 90 degrees clockwise
    animated, frames = io.BytesIO(), [Image.new("P", (40, 30), n) for n in range(3)]
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:])
    logo = io.BytesIO()
    Image.new("RGBA", (50, 50), (0, 200, 0, 100)).save(logo, "WEBP")
    ids = [stored(client, "camera.jpg", camera), stored(client, "clip.gif", animated.getvalue()),
           stored(client, "shot.webp", photo((300, 200), "WEBP")), stored(client, "logo.webp", logo.getvalue())]
    _, reply = ask(client, alice, message="What are these?", files=ids, model="scripted/sees")
    shown_to_model = seen(reply)
    assert [kind_and_size[:3] for kind_and_size in shown_to_model] == [
        ("image/jpeg", 683, 1024),  # upright, long side 1024
        ("image/png", 40, 30),  # a GIF's first frame, lossless
        ("image/jpeg", 300, 200), ("image/png", 50, 50)]  # a WebP photo as JPEG, one with transparency as PNG
    shown = Image.open(io.BytesIO(client.get(f"/api/files/{ids[0]}", headers=alice).data))
    assert shown.size == (3000, 2000) and shown.getexif()[0x010F] == "RiverCam"  # the owner's original, as sent
    files_dir = app.extensions["rill"].files
    blob = files_dir.blob(hashlib.sha256(camera).hexdigest())
    normalised = Image.open(blob.with_name(blob.name + ".image"))
    assert not normalised.getexif() and normalised.size == (683, 1024)
    top, bottom = normalised.getpixel((340, 100)), normalised.getpixel((340, 900))
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]  # turned: red above, blue below
    info = client.get(f"/api/files/{ids[0]}/info", headers=alice).get_json()
    assert (info["width"], info["height"]) == (3000, 2000)
    blob.with_name(blob.name + ".image").unlink()  # as an upload of the release before this one was kept
    _, again = ask(client, alice, message="And now?", files=ids[:1], model="scripted/sees")
    assert seen(again)[0] == shown_to_model[0]


def test_an_image_for_a_text_only_model_is_refused_and_nothing_is_written(app):
    client, alice = app.test_client(), as_user("alice")
    image = stored(client, "red.png", png())
    before = client.get("/api/threads", headers=alice).get_json()["revision"]
    r = client.post("/api/chat", json={"message": "What colour?", "model": HISTORY, "files": [image]}, headers=alice)
    assert r.status_code == 400, r.get_data(as_text=True)
    error = r.get_json()["error"]
    assert error["type"] == "model_not_multimodal" and "'red.png' is an image" in error["message"]
    assert client.get("/api/threads", headers=alice).get_json()["revision"] == before


@pytest.mark.parametrize("body,words", [
    ({"message": "x", "files": ["nope"]}, "files.0: no file 'nope'"),
    ({"message": "x", "files": []}, "files"),
    ({"message": "x", "files": [f"f{n}" for n in range(11)]}, "files"),
    ({"thread_id": "t", "parent_id": "q", "files": ["f"]}, "files go with a message"),
])
def test_bad_files_are_400s(app, body, words):
    r = app.test_client().post("/api/chat", json={"model": HISTORY, **body}, headers=as_user("alice"))
    assert r.status_code == 400 and words in r.get_json()["error"]["message"], r.get_json()


def test_another_users_file_is_not_found(app):
    client = app.test_client()
    bobs = stored(client, "bob.txt", b"Bob's notes", user="bob")
    r = client.post("/api/chat", json={"message": "x", "model": HISTORY, "files": [bobs]}, headers=as_user("alice"))
    assert r.status_code == 400 and f"no file {bobs!r}" in r.get_json()["error"]["message"]


def test_a_file_goes_with_the_last_message_that_has_it(app):
    client, alice = app.test_client(), as_user("alice")
    file_id = stored(client, "notes.txt", b"The Aare joins the Rhine.")
    first, _ = ask(client, alice, message="Where does the Aare go?", files=[file_id])
    second, _ = ask(client, alice, message="And again?", files=[file_id])  # a thread of its own
    assert client.delete(f"/api/threads/{first['thread_id']}", headers=alice).status_code == 204
    assert client.get(f"/api/files/{file_id}", headers=alice).status_code == 200  # the second still has it
    assert client.delete(f"/api/threads/{second['thread_id']}/messages/{second['question_id']}",
                         headers=alice).status_code == 204
    assert client.get(f"/api/files/{file_id}", headers=alice).status_code == 404
    unsent = stored(client, "later.txt", b"kept until sent or deleted")
    assert client.get(f"/api/files/{unsent}", headers=alice).status_code == 200  # no message had it: kept


def test_an_edit_keeps_or_drops_a_questions_files(app):
    client, alice = app.test_client(), as_user("alice")
    kept, dropped = stored(client, "kept.txt", b"kept"), stored(client, "dropped.txt", b"dropped")
    start, _ = ask(client, alice, message="Compare.", files=[kept, dropped])
    route = f"/api/threads/{start['thread_id']}/messages/{start['question_id']}"
    r = client.patch(route, json={"parts": [{"type": "text", "text": "Compare again."},
                                            {"type": "file", "file_id": kept}]}, headers=alice)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["parts"][1] == {"type": "file", "file_id": kept}
    assert client.get(f"/api/files/{kept}", headers=alice).status_code == 200
    assert client.get(f"/api/files/{dropped}", headers=alice).status_code == 404  # no message has it now
    r = client.patch(route, json={"parts": [{"type": "file", "file_id": "not-mine"}]}, headers=alice)
    assert r.status_code == 400 and "parts.0: no file 'not-mine' of yours" in r.get_json()["error"]["message"]


def test_a_share_link_shows_its_files_and_keeps_them_until_it_is_revoked(make_app):
    app = make_app(jwt_secret=SECRET, share_public=True)
    client, alice = app.test_client(), as_user("alice")
    picture, notes = png(40, 20), b"The Aare joins the Rhine."
    ids = [stored(client, "lake.png", picture), stored(client, "notes.txt", notes)]
    start, _ = ask(client, alice, message="Look.", files=ids, model="scripted/sees")
    thread = start["thread_id"]
    token = client.post(f"/api/threads/{thread}/share", headers=alice).get_json()["token"]
    shared = client.get(f"/api/shared/{token}").get_json()  # signed out
    assert sorted(shared["files"]) == sorted(ids) and shared["files"][ids[0]]["name"] == "lake.png"
    assert "owner" not in shared and "alice" not in json.dumps(shared)
    assert client.get(f"/api/shared/{token}/files/{ids[1]}").data == notes
    preview = client.get(f"/api/shared/{token}/files/{ids[0]}/preview")
    assert preview.status_code == 200 and preview.mimetype == "image/png" and preview.headers["Cache-Control"] == "no-store"
    assert client.get(f"/api/shared/{token}/files/{ids[0]}").data == preview.data  # never the original (its EXIF)
    other = stored(client, "other.txt", b"not shown")
    assert client.get(f"/api/shared/{token}/files/{other}").status_code == 404  # alice's, but not on the link
    assert client.get(f"/api/files/{ids[1]}").status_code == 401  # the owner's route still wants the owner
    question = client.get(f"/api/threads/{thread}", headers=alice).get_json()["messages"][0]["id"]
    assert client.delete(f"/api/threads/{thread}/messages/{question}", headers=alice).status_code == 204
    assert client.get(f"/api/shared/{token}/files/{ids[1]}").data == notes  # pinned by the link
    assert client.get(f"/api/files/{ids[1]}/info", headers=alice).status_code == 200
    blob = app.extensions["rill"].files.blob(hashlib.sha256(notes).hexdigest())
    assert client.delete(f"/api/threads/{thread}/share/{token}", headers=alice).status_code == 204
    assert client.get(f"/api/files/{ids[1]}/info", headers=alice).status_code == 404 and not blob.exists()
