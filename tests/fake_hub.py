"""A loopback stand-in for the Hugging Face hub's download routes, as `huggingface_hub` asks them
(pointed at with HF_ENDPOINT): a repository's file list with sizes and LFS hashes, and each file
by HEAD and GET (with Range, so an interrupted download resumes). It can cut a download half-way
once, serve bytes that do not match the hash it lists, and send slowly (a pull to watch or cancel)."""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        super().__init__(("127.0.0.1", 0), Handler)
        self.repos = repos
        self.cut_once: set[str] = set()  # "repo/file": the next GET stops half-way
        self.corrupt: set[str] = set()  # "repo/file": served with a byte changed
        self.rate: dict[str, int] = {}  # "repo": bytes per second its files are sent at
        self.gets: list[tuple[str, str | None]] = []  # (path, Range header)
        self.misses: list[str] = []  # routes it does not answer
        self.stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> "FakeHub":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    server: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def not_found(self, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(404)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.answer(body=True)

    def do_HEAD(self):
        self.answer(body=False)

    def answer(self, body: bool) -> None:
        path = self.path.split("?")[0]
        if info := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", path):
            return self.info(info.group(1))
        if tree := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/[^/]+/?", path):
            return self.tree(tree.group(1))
        if file := re.fullmatch(r"/([^/]+/[^/]+)/resolve/[^/]+/(.+)", path):
            return self.file(file.group(1), file.group(2), body)
        self.server.misses.append(self.path)
        self.not_found("EntryNotFound", f"no route {path}")

    def info(self, repo: str) -> None:
        files = self.server.repos.get(repo)
        if files is None:
            return self.not_found("RepoNotFound", "Repository not found")
        self.send_json({"id": repo, "modelId": repo, "sha": COMMIT, "siblings": [
            {"rfilename": name, "size": len(blob), "lfs": {"sha256": hashlib.sha256(blob).hexdigest(),
                                                           "size": len(blob), "pointerSize": 134}}
            for name, blob in files.items()]})

    def tree(self, repo: str) -> None:
        files = self.server.repos.get(repo)
        if files is None:
            return self.not_found("RepoNotFound", "Repository not found")
        self.send_json([{"type": "file", "path": name, "size": len(blob), "oid": hashlib.sha1(blob).hexdigest(),
                         "lfs": {"oid": hashlib.sha256(blob).hexdigest(), "size": len(blob), "pointerSize": 134}}
                        for name, blob in files.items()])

    def send_json(self, payload) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def file(self, repo: str, name: str, body: bool) -> None:
        files = self.server.repos.get(repo)
        if files is None:
            return self.not_found("RepoNotFound", "Repository not found")
        if name not in files:
            return self.not_found("EntryNotFound", f"{name} does not exist in {repo}")
        blob, key = files[name], f"{repo}/{name}"
        sent = blob[:-1] + bytes([blob[-1] ^ 1]) if key in self.server.corrupt else blob
        start = 0
        if body:
            self.server.gets.append((name, self.headers.get("Range")))
            if ranged := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or ""):
                start = int(ranged.group(1))
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(blob).hexdigest()}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(sent) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(sent) - 1}/{len(sent)}")
        self.end_headers()
        if not body:
            return
        if key in self.server.cut_once:
            self.server.cut_once.discard(key)
            self.wfile.write(sent[start: start + (len(sent) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        rate = self.server.rate.get(repo)
        if rate is None:
            self.wfile.write(sent[start:])
            return
        step = max(rate // 20, 1)
        try:
            for at in range(start, len(sent), step):
                self.wfile.write(sent[at: at + step])
                time.sleep(step / rate)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the puller went away (cancelled)
