"""A model pulled from the hub while serving: hub.py runs in a child process (so a cancel is a
kill, and the hub's client never runs on the server's event loop), its progress read from the
lines it prints. A cancel kills it, and its part file is deleted; files finished before it stay in
the hub's cache."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ...runtime import real_subprocess
from .hub import Pulled, PullError


class Pull:
    def __init__(self, spec: str):
        self.spec = spec
        self.done = 0
        self.total = 0
        self.cancelled = False
        self.parts: list[Path] = []  # the blobs it is writing (their parts: `<blob>[.<unique>].incomplete`)
        self._process = None

    def progress(self) -> dict:
        return {"done": self.done, "total": self.total}

    def run(self) -> Pulled:
        """Blocks (in the provider's OS thread) until the files are down and checked."""
        self._process = process = real_subprocess.Popen(
            [sys.executable, "-m", "rill.providers.local.hub", self.spec],
            stdout=real_subprocess.PIPE, stderr=real_subprocess.STDOUT, text=True)
        if self.cancelled:  # before it started
            process.kill()
        result, said = None, "it stopped without a word"
        for line in process.stdout:
            try:
                result = json.loads(line)
            except ValueError:
                said = line.strip() or said  # a warning, or a crash's last line
                continue
            if "done" in result:
                self.done, self.total = result["done"], result["total"]
                self.parts = [Path(blob) for blob in result.get("blobs", self.parts)]
        process.wait()
        for blob in self.parts:  # a killed child leaves the part it was writing
            for part in blob.parent.glob(f"{blob.name}.*incomplete"):
                part.unlink(missing_ok=True)
        if self.cancelled:
            raise PullError(f"pulling {self.spec.removeprefix('hf:')} was cancelled")
        if not result or "path" not in result:
            raise PullError((result or {}).get("error") or f"pulling {self.spec.removeprefix('hf:')} failed: {said}")
        self.done = self.total
        return Pulled(result["repo"], Path(result["path"]), Path(result["mmproj"]) if result["mmproj"] else None)

    def cancel(self) -> None:
        self.cancelled = True
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
