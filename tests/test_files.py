"""Fast tier: the file store through /api/files (in process): uploads are kept once per SHA-256,
typed by their bytes, served to their owner only with an ETag, and refused clearly when too
large, of a type Rill does not read, or not decodable."""
import hashlib
import io
import time

import jwt
import pytest
from PIL import Image

from tests.test_chat_routes import SECRET


def png(width=64, height=48, color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def pdf(pages: list[str]) -> bytes:
    """A PDF with one line of text on each page (Helvetica), its cross-reference table exact."""
    count = len(pages)
    objects = ["<< /Type /Catalog /Pages 2 0 R >>",
               "<< /Type /Pages /Kids [" + " ".join(f"{4 + 2 * n} 0 R" for n in range(count)) + f"] /Count {count} >>",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    for n, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                       f"/Contents {5 + 2 * n} 0 R >>")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    out, offsets = b"%PDF-1.4\n", []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def as_user(user: str) -> dict:
    return {"Authorization": f"Bearer {jwt.encode({'sub': user, 'exp': time.time() + 600}, SECRET, 'HS256')}"}


def upload(client, name: str, data: bytes, headers=None, **fields):
    form = {"file": (io.BytesIO(data), name), **fields}
    return client.post("/api/files", data=form, content_type="multipart/form-data", headers=headers or {})


@pytest.fixture
def app(make_app):
    return make_app(jwt_secret=SECRET, max_upload_bytes=100_000)


def test_an_image_is_kept_by_its_hash_and_served_back_with_an_etag(app):
    client, alice = app.test_client(), as_user("alice")
    data = png()
    r = upload(client, "red.png", data, alice)
    assert r.status_code == 201, r.get_data(as_text=True)
    meta = r.get_json()
    assert (meta["name"], meta["type"], meta["size"], meta["width"], meta["height"]) == (
        "red.png", "image/png", len(data), 64, 48)
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    got = client.get(f"/api/files/{meta['id']}", headers=alice)
    assert got.status_code == 200 and got.data == data and got.mimetype == "image/png"
    assert got.headers["ETag"] == f'"{meta["sha256"]}"' and "immutable" in got.headers["Cache-Control"]
    again = client.get(f"/api/files/{meta['id']}", headers={**alice, "If-None-Match": got.headers["ETag"]})
    assert again.status_code == 304
    assert client.get(f"/api/files/{meta['id']}/info", headers=alice).get_json() == meta
    blob = app.extensions["rill"].files.blob(meta["sha256"])
    assert blob.read_bytes() == data


def test_the_type_comes_from_the_bytes_not_the_name(app):
    client, alice = app.test_client(), as_user("alice")
    renamed = upload(client, "report.pdf", png(), alice).get_json()
    assert renamed["type"] == "image/png" and renamed["name"] == "report.pdf"
    code = upload(client, "rivers.py", "print('Rhône, Rhein')\n".encode(), alice).get_json()
    assert code["type"] == "text/plain" and "width" not in code
    document = upload(client, "x.txt", pdf(["Rivers"]), alice).get_json()
    assert document["type"] == "application/pdf"


@pytest.mark.parametrize("name,data,status,words", [
    ("archive.zip", b"PK\x03\x04" + bytes(range(256)) * 4, 415, "'archive.zip' is application/zip"),
    ("blob.bin", bytes(range(256)) * 4, 415, "is binary data: Rill reads images"),
    ("latin1.txt", "café".encode("latin-1"), 415, "Rill reads images (PNG, JPEG, WebP, GIF), PDFs and text"),
    ("broken.png", png()[:60], 400, "'broken.png' does not decode as an image"),
    ("broken.pdf", b"%PDF-1.4\n" + b"0" * 200, 400, "'broken.pdf' does not read as a PDF"),
])
def test_what_rill_cannot_read_is_refused_by_name(app, name, data, status, words):
    r = upload(app.test_client(), name, data, as_user("alice"))
    assert r.status_code == status, r.get_data(as_text=True)
    assert words in r.get_json()["error"]["message"]


def test_over_the_limit_is_a_413_that_names_it_and_keeps_nothing(app):
    client, alice = app.test_client(), as_user("alice")
    for size in (120_000, 1_000_000):  # within the form's slack (read, then refused), and far over (refused at once)
        r = upload(client, "big.txt", b"a" * size, alice)
        assert r.status_code == 413, r.get_data(as_text=True)
        assert "RILL_MAX_UPLOAD_BYTES (100,000 bytes)" in r.get_json()["error"]["message"]
    files = app.extensions["rill"].files
    assert [p for p in files.directory.rglob("*") if p.is_file()] == []


def test_bad_forms_are_400s_that_say_what_is_wrong(app):
    client, alice = app.test_client(), as_user("alice")
    r = upload(client, "a.txt", b"hello", alice, purpose="vision")
    assert r.status_code == 400 and "unknown form fields: purpose" in r.get_json()["error"]["message"]
    r = client.post("/api/files", data={"other": (io.BytesIO(b"x"), "a.txt")}, content_type="multipart/form-data",
                    headers=alice)
    assert r.status_code == 400 and "unknown form fields: other" in r.get_json()["error"]["message"]
    r = client.post("/api/files", data={}, content_type="multipart/form-data", headers=alice)
    assert r.status_code == 400 and "multipart field named `file`" in r.get_json()["error"]["message"]
    r = client.post("/api/files", json={"file": "aGVsbG8="}, headers=alice)
    assert r.status_code == 415 and "multipart/form-data" in r.get_json()["error"]["message"]


def test_a_file_is_its_owners_and_its_bytes_go_with_the_last_copy(app):
    client, alice, bob = app.test_client(), as_user("alice"), as_user("bob")
    data = png(color=(0, 90, 200))
    first = upload(client, "blue.png", data, alice).get_json()
    second = upload(client, "same.png", data, bob).get_json()
    assert first["id"] != second["id"] and first["sha256"] == second["sha256"]
    assert client.get(f"/api/files/{first['id']}", headers=bob).status_code == 404
    assert client.delete(f"/api/files/{first['id']}", headers=bob).status_code == 404
    assert client.get("/api/files/" + first["id"]).status_code == 401  # auth on: no token, no file
    blob = app.extensions["rill"].files.blob(first["sha256"])
    assert client.delete(f"/api/files/{first['id']}", headers=alice).status_code == 204
    assert client.get(f"/api/files/{first['id']}", headers=alice).status_code == 404
    assert blob.exists() and client.get(f"/api/files/{second['id']}", headers=bob).data == data
    assert client.delete(f"/api/files/{second['id']}", headers=bob).status_code == 204
    assert not blob.exists()
