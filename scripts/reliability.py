"""Reliability suite: the running service under fuzzing, concurrency and kill -9, with bounded counts.

    .venv/bin/python scripts/reliability.py            # all three phases (make reliability; CI runs it)
    .venv/bin/python scripts/reliability.py --phases kill --kills 20

1. fuzz: schemathesis against a real `rag serve` (fake embedder and generator): every route, every check
   (positive_data_acceptance aside: a schema-valid chat whose last message is not the user's, or a file
   that is not .txt/.md, is rightly refused). Then the corpus folder and the index must still agree.
2. concurrency: parallel chats (fake generator) and uploads while searches, health and document lists
   run, with the real embedder when provisioned (uploads and searches compete for the 2 cores). Every search,
   health check and list must answer within --read-bound seconds, every chat (which may wait for the chats
   queued before it) within --chat-bound, and every upload must end applied or rejected, none lost.
3. kill: uploads and deletes while the server is killed with SIGKILL at a random moment, --kills times;
   after each restart the corpus folder and the index must agree file for file (sha256), every
   acknowledged upload must be there and every acknowledged delete gone, and no temporary file remains.
4. rebuild: `rag ingest --rebuild` killed with SIGKILL at a random moment, --rebuilds times, while a server
   serves: the index must open whole after each kill and the server stay ready and agree with the corpus.

Servers listen on 127.0.0.1 only. Prints the counts of each phase and ends with "reliability: N passed,
M failed" (the phases); exits non-zero when any phase failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
UPLOAD_TIMEOUT = 300.0


# --- a server in its own process ------------------------------------------------------------------------
class Server:
    """`rag serve` on a free loopback port, over a private copy of the sample corpus."""

    def __init__(self, workdir: Path, embedder: str, **env: str) -> None:
        self.workdir = workdir
        self.corpus = workdir / "corpus"
        self.index = workdir / "index"
        # `rag` on the fake generator (tests/fakes), and the fake embedder unless the real one is asked for
        self.rag = [sys.executable, "-m", "tests.fakes", *(["--real-embedder"] if embedder != "fake" else [])]
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_CORPUS_DIR": str(self.corpus),
                    "RAG_INDEX_DIR": str(self.index),
                    "RAG_MODELS_DIR": os.environ.get("RAG_MODELS_DIR", str(ROOT / "models")),
                    "RAG_ALLOWED_HOSTS": "127.0.0.1", **env}
        self.env.pop("RAG_API_KEY", None)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        """A fresh corpus copy and its index, built by `rag ingest`."""
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        shutil.copytree(ROOT / "corpus", self.corpus)
        subprocess.run([*self.rag, "ingest"], env=self.env, cwd=self.workdir, check=True,
                       stdout=subprocess.DEVNULL)

    def start(self, timeout: float = 180.0) -> None:
        self.port = free_port()
        log = (self.workdir / f"server-{self.starts}.log").open("wb")
        self.starts += 1
        self.proc = subprocess.Popen([*self.rag, "serve", "--host", "127.0.0.1", "--port",
                                      str(self.port)], env=self.env, cwd=self.workdir, stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}; see {log.name}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).json()["status"] == "ready":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError("the server did not become ready")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None

    def logs(self) -> str:
        return "".join(p.read_text("utf-8", "replace") for p in sorted(self.workdir.glob("server-*.log")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def document_text(n: int, paragraphs: int = 2) -> bytes:
    """A unique small report: a title and ``paragraphs`` sections of a few sentences each."""
    lines = [f"青松县第{n}号教育报告"]
    for p in range(paragraphs):
        lines.append(f"{'一二三四五六七八九十'[p % 10]}、第{n}号报告第{p}部分")
        lines.append(f"青松县第{n}中学在第{p}学期新增学位{n * 10 + p}个，教师{n + p}名参加培训。"
                     f"全县共有学校{n + 40}所，在校学生{n * 100 + p}人，办学条件持续改善。"
                     "各校坚持立德树人，推进课后服务，家长满意度稳步提高。")
    return ("\n".join(lines) + "\n").encode()


def after_restart(server: Server, client: httpx.Client, present: set[str], absent: set[str], when: str) -> list[str]:
    """What a restarted server got wrong: corpus and index disagree, or an acknowledged write was undone."""
    problems = [f"{when}: {p}" for p in agreement(server, client)]
    listed = {d["id"] for d in client.get("/v1/documents").json()["data"]}
    if lost := present - listed:
        problems.append(f"acknowledged uploads lost: {sorted(lost)}")
    if back := absent & listed:
        problems.append(f"acknowledged deletes undone: {sorted(back)}")
    return problems


def agreement(server: Server, client: httpx.Client) -> list[str]:
    """Problems between the corpus folder and the index the server serves (empty when they agree)."""
    listed = {d["id"]: d["sha256"] for d in client.get(f"{server.url}/v1/documents").json()["data"]}
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in server.corpus.iterdir()
             if p.is_file() and not p.name.startswith(".")}
    problems = [f"indexed without a file: {sorted(set(listed) - set(files))}"] if set(listed) - set(files) else []
    if set(files) - set(listed):
        problems.append(f"files not indexed: {sorted(set(files) - set(listed))}")
    if stale := sorted(d for d in set(files) & set(listed) if files[d] != listed[d]):
        problems.append(f"file and index differ: {stale}")
    if hidden := sorted(p.name for p in server.corpus.iterdir() if p.name.startswith(".")):
        problems.append(f"temporary files left in the corpus: {hidden}")
    if journals := sorted(p.name for p in server.index.glob(".*.journal*")):
        problems.append(f"journal left: {journals}")
    return problems


@dataclass
class Phase:
    name: str
    counts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# --- 1. fuzzing ------------------------------------------------------------------------------------------
def fuzz(args: argparse.Namespace, work: Path) -> Phase:
    phase = Phase("fuzz")
    server = Server(work / "fuzz", "fake", RAG_MIN_DENSE_SCORE="0")
    server.prepare()
    server.start()
    try:
        command = [str(BIN / "schemathesis"), "run", f"{server.url}/openapi.json", "--checks", "all",
                   "--exclude-checks", "positive_data_acceptance", "-n", str(args.examples), "--seed",
                   str(args.seed), "--no-color", "--generation-database", "none", "--request-timeout", "30",
                   "--max-response-time", str(args.read_bound)]
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=server.workdir)
        phase.counts["seconds"] = round(time.monotonic() - started, 1)
        out = result.stdout + result.stderr
        if m := re.search(r"(\d+) generated, (\d+) (?:passed|found)", out):
            phase.counts["requests"] = int(m.group(1))
        phase.counts["operations"] = int(m.group(1)) if (m := re.search(r"Tested: (\d+)", out)) else 0
        failures = re.findall(r"❌ (ST\d+ [^:\n]+): (\d+)", out)
        phase.counts["failures"] = sum(int(n) for _, n in failures)
        if result.returncode != 0:
            phase.problems.append("schemathesis failed: " + "; ".join(f"{k} ×{n}" for k, n in failures)
                                  if failures else out[-2000:])
        with httpx.Client(timeout=30) as client:
            phase.problems += agreement(server, client)
    finally:
        server.stop()
    tracebacks = server.logs().count("Traceback")
    phase.counts["server tracebacks"] = tracebacks
    if re.search(r"Exception in ASGI application", server.logs()):
        phase.problems.append("the server crashed on a request (see its log)")
    return phase


# --- 2. concurrency --------------------------------------------------------------------------------------
class Timings:
    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.samples: list[tuple[str, float]] = []
        self.slowest: dict[str, float] = {}
        self.statuses: Counter[str] = Counter()
        self.lock = threading.Lock()

    def call(self, name: str, fn: Callable[[], httpx.Response]) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response: httpx.Response | None = fn()
            status = str(response.status_code) if response is not None else "none"
        except httpx.HTTPError as exc:
            response, status = None, type(exc).__name__
        with self.lock:
            self.seconds.append(seconds := time.monotonic() - started)
            self.samples.append((name, seconds))
            self.slowest[name] = round(max(seconds, self.slowest.get(name, 0.0)), 2)
            self.statuses[f"{name} {status}"] += 1
        return response


def concurrency(args: argparse.Namespace, work: Path) -> Phase:
    phase = Phase("concurrency")
    embedder = args.embedder
    server = Server(work / "concurrency", embedder, RAG_MIN_DENSE_SCORE="0")
    server.prepare()
    server.start()
    reads, writes = Timings(), Timings()
    applied: set[str] = set()
    rejected: set[str] = set()
    unknown: set[str] = set()
    stop = threading.Event()
    try:
        with httpx.Client(base_url=server.url, timeout=UPLOAD_TIMEOUT) as client:
            before = {d["id"] for d in client.get("/v1/documents").json()["data"]}

            def reader(n: int) -> None:
                queries = ["阳山县排名", "辽源市教育局局长", "公办园学位", "青松县学校", "教师培训"]
                while not stop.is_set():
                    query = {"query": queries[n % len(queries)]}
                    reads.call("search", lambda q=query: client.post("/v1/search", json=q))  # type: ignore[misc]
                    reads.call("health", lambda: client.get("/health"))
                    reads.call("documents", lambda: client.get("/v1/documents"))
                    n += 1

            def chatter(n: int) -> None:
                questions = ["阳山县在清远市排名第几？", "辽源市教育局局长是谁？", "火星基地的预算是多少？"]
                for q in range(args.chats_each):
                    if stop.is_set():
                        return
                    body = {"messages": [{"role": "user", "content": questions[(n + q) % len(questions)]}]}
                    reads.call("chat", lambda b=body: client.post("/v1/chat/completions", json=b))  # type: ignore[misc]

            def uploader(n: int) -> None:
                name = f"load{n:03d}.txt"
                response = writes.call("upload", lambda: client.post(
                    "/v1/documents", files={"file": (name, document_text(n, args.upload_sections), "text/plain")}))
                outcome = settle(client, response)
                with writes.lock:
                    {"applied": applied, "rejected": rejected}.get(outcome, unknown).add(name)

            threads = [threading.Thread(target=reader, args=(i,)) for i in range(args.readers)]
            threads += [threading.Thread(target=chatter, args=(i,)) for i in range(args.chats)]
            uploaders = [threading.Thread(target=uploader, args=(i,)) for i in range(args.uploads)]
            started = time.monotonic()
            for t in threads + uploaders:
                t.start()
            for t in uploaders:
                t.join(UPLOAD_TIMEOUT * 2)
            stop.set()
            for t in threads:
                t.join(60)
            phase.counts["seconds"] = round(time.monotonic() - started, 1)
            after = {d["id"] for d in client.get("/v1/documents").json()["data"]}
            if after != before | applied:
                phase.problems.append(f"documents {sorted(after ^ (before | applied))} differ from the uploads "
                                      "acknowledged")
            if unknown:
                phase.problems.append(f"uploads with no final answer: {sorted(unknown)}")
            phase.problems += agreement(server, client)
    finally:
        server.stop()
    for kind, bound in (("chat", args.chat_bound), ("search", args.read_bound), ("health", args.read_bound),
                        ("documents", args.read_bound)):
        slow = [s for k, s in reads.samples if k == kind and s > bound]
        if slow:
            phase.problems.append(f"{len(slow)} {kind} requests took longer than {bound} s (slowest {max(slow):.1f} s)")
    if bad := {k: v for k, v in reads.statuses.items() if not re.search(r" (200|503)$", k)}:
        phase.problems.append(f"reads failed: {bad}")
    phase.counts.update({
        "embedder": embedder, "reads": len(reads.seconds), "read p50 s": round(statistics.median(reads.seconds), 3),
        "read p95 s": round(sorted(reads.seconds)[int(0.95 * (len(reads.seconds) - 1))], 3),
        "read max s": round(max(reads.seconds), 3), "slowest by route s": reads.slowest,
        "read statuses": dict(sorted(reads.statuses.items())),
        "uploads": args.uploads, "applied": len(applied), "rejected": len(rejected), "lost": len(unknown),
        "upload statuses": dict(sorted(writes.statuses.items()))})
    return phase


def settle(client: httpx.Client, response: httpx.Response | None, timeout: float = UPLOAD_TIMEOUT) -> str:
    """"applied", "rejected" or "unknown": the final outcome of an upload or delete, following its job."""
    if response is None:
        return "unknown"
    if response.status_code in (200, 201):
        return "applied"
    if response.status_code != 202:
        return "rejected"
    job = response.json()["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/v1/jobs/{job}").json()["status"]
        if status in ("done", "failed"):
            return "applied" if status == "done" else "rejected"
        time.sleep(0.1)
    return "unknown"


# --- 3. kill and restart ---------------------------------------------------------------------------------
def kill_loop(args: argparse.Namespace, work: Path) -> Phase:
    phase = Phase("kill")
    rng = random.Random(args.seed)
    server = Server(work / "kill", "fake", RAG_MIN_DENSE_SCORE="0")
    server.prepare()
    present: set[str] = set()  # acknowledged uploads (until a delete is sent)
    absent: set[str] = set()  # acknowledged deletes
    # A write cut by the kill may or may not have committed: its document may be either way.
    lock = threading.Lock()
    ops: Counter[str] = Counter()
    serial = iter(range(10**6))
    try:
        for _ in range(args.kills):
            server.start()
            with httpx.Client(base_url=server.url, timeout=30) as client:
                phase.problems += after_restart(server, client, present, absent, f"after restart {server.starts - 1}")
                alive = threading.Event()
                alive.set()

                def writer(alive: threading.Event = alive, client: httpx.Client = client) -> None:
                    while alive.is_set():
                        with lock:
                            victim = rng.choice(sorted(present)) if present and rng.random() < 0.3 else None
                            present.discard(victim or "")
                        try:
                            if victim is None:
                                n = next(serial)
                                name = f"k{n:05d}.txt"
                                r = client.post("/v1/documents", files={
                                    "file": (name, document_text(n, 1 + n % 4), "text/plain")})
                                outcome = settle(client, r, 30)
                                key = "upload"
                            else:
                                name = victim
                                outcome = settle(client, client.delete(f"/v1/documents/{name}"), 30)
                                key = "delete"
                        except (httpx.HTTPError, ValueError):
                            with lock:
                                ops["cut by the kill"] += 1
                            return
                        with lock:
                            ops[f"{key} {outcome}"] += 1
                            if key == "upload" and outcome == "applied":
                                present.add(name)
                            elif key == "delete" and outcome == "applied":
                                absent.add(name)
                            elif key == "delete" and outcome == "rejected":
                                present.add(name)  # refused: it stays

                writers = [threading.Thread(target=writer) for _ in range(2)]
                done_before = sum(v for k, v in ops.items() if k != "cut by the kill")
                for t in writers:
                    t.start()
                # Kill while writes stream: after this round's second acknowledged write, at a random moment.
                deadline = time.monotonic() + 60
                while sum(v for k, v in ops.items() if k != "cut by the kill") < done_before + 2 \
                        and time.monotonic() < deadline:
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 0.5))
                server.kill()
                alive.clear()
                for t in writers:
                    t.join(60)
        server.start()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            phase.problems += after_restart(server, client, present, absent, "after the last restart")
            listed = {d["id"] for d in client.get("/v1/documents").json()["data"]}
            phase.counts["documents at the end"] = len(listed)
    finally:
        server.stop()
    logs = server.logs()
    phase.counts.update({"kills": args.kills, "operations": dict(sorted(ops.items())),
                         "interrupted writes recovered": logs.count("an interrupted"),
                         "leftover .tmp-* generations": len(list((server.index / "default").glob(".tmp-*")))})
    return phase


# --- 4. kill a rebuild ------------------------------------------------------------------------------------
def rebuild_loop(args: argparse.Namespace, work: Path) -> Phase:
    """`rag ingest --rebuild` killed with SIGKILL at a random moment of its run, --rebuilds times, while a
    server serves the index: after each kill the server must stay ready, serving an index that agrees with
    the corpus folder, and the index on disk must open whole (every chunk in both in-memory parts)."""
    phase = Phase("rebuild")
    rng = random.Random(args.seed)
    server = Server(work / "rebuild", "fake", RAG_MIN_DENSE_SCORE="0")
    server.prepare()
    for n in range(args.rebuild_documents):  # so that building, not starting Python, is most of a rebuild
        (server.corpus / f"r{n:04d}.txt").write_bytes(document_text(n, 8))
    documents = str(len(list(server.corpus.iterdir())))
    rebuild = [*server.rag, "ingest", "--rebuild", str(server.corpus)]
    started = time.monotonic()
    subprocess.run(rebuild, env=server.env, cwd=server.workdir, check=True, stdout=subprocess.DEVNULL)
    whole = time.monotonic() - started  # one uninterrupted rebuild, to spread the kills over
    check = ("import sys; from pathlib import Path; from rag.index import Index; i = Index.open(Path(sys.argv[1])); "
             "print(i.chunk_count(), i.vectors.count(), i.lexical.count(), len(i.documents))")
    killed = 0
    try:
        server.start()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for n in range(args.rebuilds):
                child = subprocess.Popen(rebuild, env=server.env, cwd=server.workdir, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
                time.sleep(rng.uniform(0.0, whole))
                killed += child.poll() is None
                child.send_signal(signal.SIGKILL)
                child.wait()
                opened = subprocess.run([sys.executable, "-c", check, str(server.index / "default")], env=server.env,
                                        capture_output=True, text=True)
                counts = opened.stdout.split()
                if opened.returncode or len(set(counts[:3])) != 1 or counts[3] != documents:
                    phase.problems.append(f"rebuild {n}: the index does not open whole: {opened.stdout.strip()} "
                                          f"{opened.stderr.strip()[-300:]}")
                deadline = time.monotonic() + 30
                while client.get("/health").json()["status"] != "ready" and time.monotonic() < deadline:
                    time.sleep(0.1)
                phase.problems += [f"rebuild {n}: {p}" for p in agreement(server, client)]
                if not client.post("/v1/search", json={"query": "阳山县", "top_k": 3}).json()["results"]:
                    phase.problems.append(f"rebuild {n}: a search found nothing")
        subprocess.run([*server.rag, "ingest"], env=server.env, cwd=server.workdir, check=True,
                       stdout=subprocess.DEVNULL)  # the next writer settles what the last kill left
    finally:
        server.stop()
    if leftovers := sorted(p.name for p in server.index.iterdir() if p.name not in ("default", ".default.lock")):
        phase.problems.append(f"left beside the index: {leftovers}")
    phase.counts.update({"rebuilds": args.rebuilds, "killed while running": killed,
                         "seconds per whole rebuild": round(whole, 1),
                         "rolled back": server.logs().count("was rolled back")})
    return phase


PHASES: dict[str, Callable[[argparse.Namespace, Path], Phase]] = {
    "fuzz": fuzz, "concurrency": concurrency, "kill": kill_loop, "rebuild": rebuild_loop}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", default="fuzz,concurrency,kill,rebuild")
    parser.add_argument("--examples", type=int, default=60, help="schemathesis examples per operation")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--embedder", default="auto", choices=["auto", "sentence-transformers", "fake"],
                        help="embedder of the concurrency phase (auto: the real one when provisioned)")
    parser.add_argument("--readers", type=int, default=3, help="threads searching, checking health, listing")
    parser.add_argument("--chats", type=int, default=6, help="threads asking questions")
    parser.add_argument("--chats-each", type=int, default=4)
    parser.add_argument("--uploads", type=int, default=12, help="parallel uploads (more than the queue holds)")
    parser.add_argument("--upload-sections", type=int, default=8, help="sections per uploaded document")
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--rebuilds", type=int, default=6, help="`rag ingest --rebuild` runs killed at random")
    parser.add_argument("--rebuild-documents", type=int, default=300, help="documents added to the rebuilt corpus")
    parser.add_argument("--read-bound", type=float, default=5.0,
                        help="seconds every search, health check and document list must answer within")
    parser.add_argument("--chat-bound", type=float, default=30.0,
                        help="seconds every chat must answer within (it may wait for the ones queued before it)")
    args = parser.parse_args()
    if args.embedder == "auto":
        models = Path(os.environ.get("RAG_MODELS_DIR", ROOT / "models"))
        args.embedder = "sentence-transformers" if (models / "multilingual-e5-small").is_dir() else "fake"
    results = []
    with tempfile.TemporaryDirectory(prefix="rag-reliability-") as tmp:
        for name in args.phases.split(","):
            started = time.monotonic()
            try:
                phase = PHASES[name](args, Path(tmp))
            except Exception as exc:  # a phase that cannot run has failed
                phase = Phase(name, problems=[f"{type(exc).__name__}: {exc}"])
            phase.counts.setdefault("seconds", round(time.monotonic() - started, 1))
            results.append(phase)
            print(json.dumps({"phase": phase.name, "ok": phase.ok, **phase.counts, "problems": phase.problems},
                             ensure_ascii=False), flush=True)
    passed = sum(p.ok for p in results)
    print(f"reliability: {passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
