"""Files in the browser: attached with the paper-clip or pasted, uploaded with their progress,
sent with the question, shown in the thread after a reload; a file too big is said before any
upload, and so is an image for a text-only model (its paper-clip greyed); an image for a model
that reads images shows in the thread after a reload and on a share link."""
import re

import pytest
import requests
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Pastes a file made in the page into the message box, as the clipboard would.
PASTE = """([name, type, size, png]) => {
  const make = () => {
    if (!png) return Promise.resolve(new Blob([new Uint8Array(size)], {type}));
    const canvas = document.createElement("canvas");
    canvas.width = 40; canvas.height = 30;
    const context = canvas.getContext("2d");
    context.fillStyle = "#1e64c8";
    context.fillRect(0, 0, 40, 30);
    return new Promise((done) => canvas.toBlob(done, "image/png"));
  };
  return make().then((blob) => {
    const data = new DataTransfer();
    data.items.add(new File([blob], name, {type}));
    document.getElementById("prompt").dispatchEvent(new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
  });
}"""

# The largest string in any IndexedDB record of the page's origin.
LARGEST_VALUE = """async () => {
  const sizes = [];
  for (const {name} of await indexedDB.databases()) {
    const db = await new Promise((ok, fail) => { const r = indexedDB.open(name); r.onsuccess = () => ok(r.result); r.onerror = fail; });
    for (const store of db.objectStoreNames) {
      const all = await new Promise((ok) => { const r = db.transaction(store).objectStore(store).getAll(); r.onsuccess = () => ok(r.result); });
      for (const value of all) sizes.push(JSON.stringify(value).length);
    }
    db.close();
  }
  return Math.max(0, ...sizes);
}"""


def test_a_document_attached_reaches_the_model_and_stays_in_the_thread(app, tmp_path, artifacts):
    app.open(model="scripted/history")
    page = app.page
    notes = tmp_path / "rivers.md"
    notes.write_text("The Aare joins the Rhine at Koblenz.\n")
    page.set_input_files("#attach-input", str(notes))
    chip = page.locator("#attachments .attachment")
    expect(chip).to_contain_text("rivers.md")
    expect(chip.locator(".attachment-state")).to_have_text("ready")
    page.screenshot(path=artifacts / "attachment-ready.png")
    app.send("Where does the Aare end?")
    app.wait_reply_done()
    expect(page.locator("#attachments")).to_be_hidden()
    expect(app.last_reply().locator(".body")).to_contain_text("The Aare joins the Rhine at Koblenz.")
    question = page.locator(".from-user").last
    expect(question.locator(".file")).to_have_text("rivers.md")
    app.reload()
    expect(page.locator(".from-user").last.locator(".file")).to_have_text("rivers.md")
    page.screenshot(path=artifacts / "attachment-sent.png")
    assert page.evaluate(LARGEST_VALUE) < 100_000
    question = page.locator(".from-user").last
    question.hover()
    question.locator("[data-action=edit]").click()
    question.locator("textarea").fill("Where does the Aare rise?")
    question.locator("textarea").press("Enter")  # Save & rerun: the new branch keeps the file
    app.wait_reply_done()
    expect(page.locator(".from-user").last.locator(".file")).to_have_text("rivers.md")
    expect(page.locator(".from-user").last.locator(".branch-count")).to_have_text("2/2")
    expect(app.last_reply().locator(".body")).to_contain_text("The Aare joins the Rhine at Koblenz.")


def test_a_text_only_model_greys_the_paper_clip_and_refuses_a_picture_before_upload(app):
    app.open(model="scripted/history")
    page = app.page
    expect(page.locator("#attach")).to_have_class(re.compile(r"\btext-only\b"))
    expect(page.locator("#attach-input")).to_have_attribute("accept", re.compile(r"\.pdf"))
    uploads = []
    page.on("request", lambda r: uploads.append(r.url) if r.url.endswith("/api/files") else None)
    page.evaluate(PASTE, ["blue.png", "image/png", 0, True])
    expect(page.locator("#attachments .attachment .attachment-state")).to_have_text(
        "This model reads text only: choose one that reads images to send a picture.")
    assert uploads == []


def test_a_pasted_image_reaches_a_model_that_reads_images_and_shows_after_reload_and_on_a_share(
        open_app, server, artifacts):
    app = open_app()
    app.open(model="scripted/sees")
    page = app.page
    expect(page.locator("#attach")).not_to_have_class(re.compile(r"\btext-only\b"))
    page.evaluate(PASTE, ["blue.png", "image/png", 0, True])
    expect(page.locator("#attachments .attachment .attachment-state")).to_have_text("ready")
    app.send("What colour is it?")
    app.wait_reply_done()
    expect(app.last_reply().locator(".body")).to_contain_text("image/png 40x30")
    app.reload()
    expect(page.locator(".from-user").last.locator(".file img")).to_have_attribute("alt", "blue.png")
    page.wait_for_function(SHOWN)
    page.screenshot(path=artifacts / "attachment-image-seen.png")
    assert page.evaluate(LARGEST_VALUE) < 100_000
    thread = app.newest_thread_id()
    token = requests.post(f"{server.url}/api/threads/{thread}/share", timeout=10).json()["token"]
    page.goto(f"{server.url}/s/{token}")
    page.wait_for_function(SHOWN)
    expect(page.locator(".from-user .file")).to_contain_text("blue.png")


# The first picture of a message has loaded, at its size.
SHOWN = "() => { const i = document.querySelector('.from-user .file img'); return i && i.complete && i.naturalWidth === 40; }"


def test_a_file_too_big_is_refused_before_it_is_sent_and_can_be_removed(app):
    app.open()
    page = app.page
    uploads = []
    page.on("request", lambda r: uploads.append(r.url) if r.url.endswith("/api/files") else None)
    page.evaluate(PASTE, ["huge.bin", "application/octet-stream", 21_000_000, False])
    chip = page.locator("#attachments .attachment")
    expect(chip).to_have_class("attachment is-error")
    expect(chip.locator(".attachment-state")).to_have_text("Too big (21 MB): this server takes files up to 20 MB.")
    page.evaluate(PASTE, ["clip.mp4", "video/mp4", 100, False])
    expect(chip.last.locator(".attachment-state")).to_have_text(
        "Rill cannot read video/mp4 files: it reads pictures (PNG, JPEG, WebP, GIF), PDFs and text files.")
    assert uploads == []
    chip.last.locator("[data-action=remove-file]").click()
    app.send("Anything?")
    expect(page.locator("#notices")).to_contain_text("Remove the files that could not be uploaded first.")
    chip.locator("[data-action=remove-file]").click()
    expect(page.locator("#attachments")).to_be_hidden()
