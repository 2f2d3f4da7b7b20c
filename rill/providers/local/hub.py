"""Models pulled from the Hugging Face hub by name, through `huggingface_hub` (its cache, HF_TOKEN,
HF_ENDPOINT, offline mode). `org/repo:QUANT` is a GGUF repository: the file of that quantization
is picked as llama.cpp's `-hf` picks it (Q4_K_M when none is named), with the repository's vision
projector when it has one. `org/repo` without GGUF files is a transformers model: the whole
directory. Every file is checked against the hub's SHA-256 once it is down; a file that does not
match is deleted, never left where Rill would load it. A connection cut mid-file resumes where it
stopped (a Range request); a pull that is stopped (cancelled, killed, out of disk) leaves no part
behind, and starts that file over when pulled again (huggingface_hub's own choice since 1.x)."""
from __future__ import annotations

import errno
import hashlib
import json
import re
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

PREFERRED = ("Q4_K_M", "Q4_K_S", "Q4_0", "Q5_K_M", "Q8_0", "Q6_K", "F16", "BF16", "F32")  # with no QUANT
QUANT = re.compile(r"(?i)(?:^|[-_.])((?:I?Q\d(?:_[A-Z0-9]+)*)|BF16|F16|F32)\.gguf$")


class PullError(Exception):
    """One line that says what went wrong and what to do."""


@dataclass(frozen=True)
class Pulled:
    repo: str
    path: Path  # a GGUF file, or a model directory
    mmproj: Path | None = None  # a GGUF repository's vision projector


def parse(spec: str) -> tuple[str, str | None]:
    repo, _, quant = spec.removeprefix("hf:").partition(":")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise PullError(f"{spec!r} is not a model name: give org/repo, or org/repo:QUANT for a GGUF repository")
    return repo, quant.upper() or None


def quant_of(filename: str) -> str | None:
    found = QUANT.search(Path(filename).name)
    return found.group(1).upper() if found else None


def is_projector(filename: str) -> bool:
    """A GGUF repository's vision projector (`mmproj-*.gguf`), not a model."""
    return Path(filename).name.lower().startswith("mmproj")


def pick(repo: str, quant: str | None, files: list[str]) -> tuple[str | None, str | None]:
    """(the GGUF file, the projector) of a repository's files; (None, None) for a transformers one."""
    ggufs = [f for f in files if f.endswith(".gguf") and not is_projector(f)]
    projectors = sorted(f for f in files if f.endswith(".gguf") and is_projector(f))
    if not ggufs:
        if quant:
            raise PullError(f"{repo} has no GGUF files, so no {quant}: pull {repo} for its transformers model")
        return None, None
    by_quant = {quant_of(f): f for f in sorted(ggufs)}
    wanted = [quant] if quant else [q for q in PREFERRED if q in by_quant] or [next(iter(by_quant))]
    if wanted[0] not in by_quant:
        there = ", ".join(sorted(q for q in by_quant if q)) or "none named"
        raise PullError(f"{repo} has no {quant} file; its quantizations: {there} (pull {repo}:<one of them>)")
    return by_quant[wanted[0]], (projectors[0] if projectors else None)


def model_name(spec: str) -> str:
    """A pulled model's id under `local/`, fixed before anything is down: `repo-gguf:q4_k_m`."""
    repo, quant = parse(spec)
    return repo.split("/")[1].lower() + (f":{quant.lower()}" if quant else "")


def pull(spec: str, progress: bool = True, on_plan: Callable[[list[tuple[Path, int]]], None] | None = None) -> Pulled:
    """Download (or find in the cache) what `spec` names, each file checked against the hub.
    `on_plan` is told, before the download starts, where each large file's bytes will be and how many."""
    from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RepositoryNotFoundError)
    from huggingface_hub.utils import disable_progress_bars
    from httpx2 import TransportError

    repo, quant = parse(spec)
    if not progress:
        disable_progress_bars()
    try:
        try:
            info = HfApi().model_info(repo, files_metadata=True)
        except (OfflineModeIsEnabled, TransportError) as unreachable:  # offline, or no network: the cache
            if cached := from_cache(repo, quant):
                return cached
            raise PullError(f"the hub cannot be reached ({type(unreachable).__name__}) and {spec.removeprefix('hf:')} "
                            f"is not in the local cache: pull it while online") from None
        hashes = {s.rfilename: s.lfs.sha256 if s.lfs else None for s in info.siblings or []}
        model, projector = pick(repo, quant, list(hashes))
        if on_plan:
            blobs = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model") / "blobs"
            wanted = [model, projector] if model else list(hashes)
            on_plan([(blobs / s.lfs.sha256, s.lfs.size) for s in info.siblings or []
                     if s.lfs and s.rfilename in wanted])
        if model is None:
            directory = Path(snapshot_download(repo, revision=info.sha))
            for name, sha in hashes.items():
                checked(directory / name, sha, repo)
            return Pulled(repo, directory)
        paths = [checked(Path(hf_hub_download(repo, name, revision=info.sha)), hashes[name], repo)
                 for name in [model, projector] if name]
        return Pulled(repo, paths[0], paths[1] if projector else None)
    except GatedRepoError:
        raise PullError(f"{repo} is gated: accept its terms on the hub, then set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise PullError(f"no model {repo} on the hub (check the name; a private one needs HF_TOKEN)") from None
    except LocalEntryNotFoundError:
        raise PullError(f"{repo} is not in the local cache, and the hub cannot be reached (HF_HUB_OFFLINE?)") from None
    except EntryNotFoundError as err:
        raise PullError(f"{repo}: {err}") from None
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise PullError(f"no room left while pulling {repo} (a full disk, or a file size limit): free some space "
                            f"and pull again") from None
        raise PullError(f"pulling {repo} failed: {err}") from None


def checked(path: Path, sha256: str | None, repo: str) -> Path:
    """The file, once its bytes are the hub's; else it is deleted (blob and link) and refused."""
    if sha256 is None:
        return path
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        path.resolve().unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise PullError(f"{path.name} from {repo} does not match the hub's SHA-256: it was deleted; pull again")
    return path


def hub_cache():
    """huggingface_hub's scan of its cache (HFCacheInfo); None before anything was downloaded."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        return scan_cache_dir()
    except CacheNotFound:
        return None


def model_repos(cache) -> list:
    """A cache scan's model repositories (CachedRepoInfo)."""
    return [r for r in cache.repos if r.repo_type == "model"] if cache else []


def local_models() -> list[dict]:
    """What the cache holds: [{repo, size, files}], largest first."""
    return sorted(({"repo": r.repo_id, "size": r.size_on_disk, "files": r.nb_files} for r in model_repos(hub_cache())),
                  key=lambda r: -r["size"])


def snapshots() -> list[tuple[str, Path, dict[str, Path]]]:
    """Each cached model repository's newest revision: (repo, its directory, {file name: path})."""
    found = []
    for repo in sorted((r for r in model_repos(hub_cache()) if r.revisions), key=lambda r: r.repo_id):
        revision = max(repo.revisions, key=lambda r: r.last_modified)
        files = {str(f.file_path.relative_to(revision.snapshot_path)): f.file_path for f in revision.files}
        found.append((repo.repo_id, revision.snapshot_path, files))
    return found


def from_cache(repo: str, quant: str | None) -> Pulled | None:
    """What a pull would give, from the cache alone (the hub cannot be reached), if it is there."""
    for cached, directory, files in snapshots():
        if cached != repo:
            continue
        try:
            model, projector = pick(repo, quant, list(files))
        except PullError:
            return None
        if model is None:
            return Pulled(repo, directory) if "config.json" in files else None
        return Pulled(repo, files[model], files[projector] if projector else None)
    return None


def cached_models() -> list[tuple[str, Path, Path | None]]:
    """What the hub's cache holds that Rill can run: (spec, model file or directory, vision
    projector). Each GGUF quantization is a model."""
    found = []
    for repo, directory, files in snapshots():
        _, projector = pick(repo, None, list(files))
        mmproj = files[projector] if projector else None
        ggufs = [n for n in sorted(files) if n.endswith(".gguf") and not is_projector(n)]
        for name in ggufs:
            quant = quant_of(name)
            found.append((f"{repo}:{quant}" if quant else repo, files[name], mmproj))
        if not ggufs and "config.json" in files:
            found.append((repo, directory, None))
    return found


def remove(repo: str) -> bool:
    """Delete every cached revision of a model; False when the cache has none."""
    cache = hub_cache()
    revisions = [rev.commit_hash for r in model_repos(cache) if r.repo_id == repo for rev in r.revisions]
    if not revisions:
        return False
    cache.delete_revisions(*revisions).execute()
    return True


def bytes_down(plan: list[tuple[Path, int]]) -> int:
    """How much of a plan is on disk: finished blobs, and the parts being written beside them
    (`<sha256>[.<unique>].incomplete`)."""
    done = 0
    for blob, size in plan:
        parts = [blob, *blob.parent.glob(f"{blob.name}*.incomplete")] if blob.parent.is_dir() else []
        done += min(size, max(map(size_of, parts), default=0))
    return done


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # a part moved into place just now
        return 0


def main(spec: str) -> int:
    """`python -m rill.providers.local.hub SPEC`: the server's pull, in a process of its own (so a
    cancel is a kill, and the hub's client never runs on the server's event loop). Prints JSON lines:
    {"done", "total"} twice a second (the first one with the "blobs" being written), then {"repo",
    "path", "mmproj"} or {"error"}."""
    def report(plan):
        total = sum(size for _, size in plan)

        def tick():
            while not finished.wait(0.5):
                print(json.dumps({"done": bytes_down(plan), "total": total}), flush=True)

        print(json.dumps({"done": bytes_down(plan), "total": total, "blobs": [str(b) for b, _ in plan]}), flush=True)
        ticker.append(threading.Thread(target=tick, daemon=True))
        ticker[0].start()

    finished, ticker = threading.Event(), []
    try:
        pulled = pull(spec, progress=False, on_plan=report)
    except PullError as err:
        print(json.dumps({"error": str(err)}), flush=True)
        return 1
    finally:
        finished.set()
        for thread in ticker:
            thread.join()
    print(json.dumps({k: str(v) if v else None for k, v in asdict(pulled).items()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
