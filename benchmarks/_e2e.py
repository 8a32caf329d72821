"""Shared parts of the end-to-end API benchmarks (api_throughput.py, judge_perf.py).

- a dataset in the official layout (holisafe_bench.json + images/), one JPEG file per row,
  each its own content as in the real data (what is done once per distinct image, such as
  checking it is whole, is paid for every row): a few dozen photo-like images of 1024x768
  (~280 KB) or 96x72, each row's copy told apart by a JPEG comment naming the row;
- a fake OpenAI server with a fixed latency in its own process (never competing for the
  measuring process's GIL);
- `timed`: a command from process start to exit, wall time and the CPU of its whole
  process tree (RUSAGE_CHILDREN, read after it exited: workers it joined are included);
- the bare reference client (`python benchmarks/_e2e.py bare ...`): reads the same files,
  builds the same JSON bodies (base64 images), sends them with httpx2.AsyncClient (the
  SDKs' HTTP library; aiohttp is not installed) at the same concurrency, writes one line
  per reply.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import multiprocessing
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {"1024x768": (1024, 768), "96x72": (96, 72)}
DISTINCT = 60
# HOLISAFE_BENCH_SRC=<a checkout>: measure that tree's code instead (e.g. the last commit,
# exported with `git archive`), for a before/after in the same conditions.
_SRC = os.environ.get("HOLISAFE_BENCH_SRC")
CLI = (
    [
        sys.executable,
        "-c",
        f"import sys; sys.path.insert(0, {_SRC!r}); "
        "from holisafe_bench.cli.main import main; main()",
    ]
    if _SRC
    else [str(ROOT / ".venv" / "bin" / "holisafe-bench")]
)


def photo(rng: random.Random, size: tuple[int, int]) -> bytes:
    """Photo-like entropy (noise over a gradient): ~280 KB at 1024x768, quality 85."""
    from PIL import Image

    noise = Image.effect_noise(size, rng.uniform(36, 44)).convert("RGB")
    gradient = Image.linear_gradient("L").resize(size).convert("RGB")
    buf = io.BytesIO()
    Image.blend(noise, gradient, 0.5).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def with_comment(jpeg: bytes, text: str) -> bytes:
    """The JPEG with a COM segment after SOI: other bytes (another sha256), same pixels."""
    body = text.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


def write_dataset(root: Path, n: int, size: str) -> Path:
    """The official layout, each row with its own file and content (as in the real data).
    A folder written before rows had distinct contents is written again."""
    from holisafe_bench.dataset.synthetic import synthetic_rows

    marker = root / "images" / ".distinct"
    if (root / "holisafe_bench.json").exists() and marker.exists():
        return root
    rows, _ = synthetic_rows(n_rows=n)
    rng = random.Random(0)
    photos = [photo(rng, SIZES[size]) for _ in range(DISTINCT)]
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows):
        row["image"] = f"img_{row['id']}.jpg"
        content = with_comment(photos[i % DISTINCT], f"holisafe-bench benchmark row {row['id']}")
        (root / "images" / row["image"]).write_bytes(content)
    marker.touch()
    (root / "holisafe_bench.json").write_text(json.dumps(rows), encoding="utf-8")
    return root


def mean_image_kb(root: Path) -> float:
    files = list((root / "images").iterdir())[:DISTINCT]
    return statistics.mean(f.stat().st_size for f in files) / 1000


def _serve(latency: float, reply: str, conn) -> None:
    from holisafe_bench.testing.fake_server import FakeResponse, FakeServer
    from holisafe_bench.testing.fake_vendors import openai_completion

    server = FakeServer(latency=latency)
    count = [0]
    # One fixed reply, encoded once: the fake's own CPU stays out of the comparison.
    body = json.dumps(openai_completion("gpt-4o", reply)).encode()

    @server.route("POST", r"/v1/chat/completions")
    def chat(req) -> FakeResponse:
        count[0] += 1
        return FakeResponse(body=body)

    server.start()
    conn.send(server.base_url + "/v1")
    conn.recv()
    conn.send(count[0])
    server.stop()


class FakeOpenAI:
    """The fake in its own (forked) process; `finish()` returns how many calls it answered."""

    def __init__(self, latency: float, reply: str) -> None:
        self.parent, child = multiprocessing.Pipe()
        ctx = multiprocessing.get_context("fork")
        self.process = ctx.Process(target=_serve, args=(latency, reply, child), daemon=True)
        self.process.start()
        self.url = self.parent.recv()

    def finish(self) -> int:
        self.parent.send("done")
        count = self.parent.recv()
        self.process.join()
        return count


def bench_env() -> dict[str, str]:
    """The environment both sides run in: a fake key, and bytecode cached as in a normal
    install (this machine sets PYTHONDONTWRITEBYTECODE, which makes every process start
    compile its imports from source: a second or more per start, for both sides), kept
    out of the source tree."""
    env = {**os.environ, "OPENAI_API_KEY": "bench-key-0000000000"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "holisafe-bench-pycache")
    return env


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, user+sys CPU seconds of the process tree), process start to exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def bare_cmd(
    kind: str, dataset: Path, url: str, concurrency: int, out: Path, extra: str = ""
) -> list[str]:
    return [
        sys.executable,
        __file__,
        "bare",
        kind,
        str(dataset),
        url,
        str(concurrency),
        str(out),
        extra,
    ]


def summarize(label: str, walls: list[float], cpus: list[float], n: int) -> tuple[float, float]:
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    runs = ", ".join(f"{w:.2f}" for w in walls)
    print(
        f"  {label:14s} wall median {wall:6.2f} s ({runs}); "
        f"CPU {cpu:6.2f} s = {cpu / n * 1000:.2f} ms/request"
    )
    return wall, cpu


# ---- the bare reference client (runs in its own process) --------------------------------


def _run_body(row: dict, images: Path) -> dict:
    """What the harness's `run` sends for gpt-4o: image first, then the query, verbatim."""
    data = base64.b64encode((images / row["image"]).read_bytes()).decode()
    content = [
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}},
        {"type": "text", "text": row["query"]},
    ]
    return {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 512,
        "temperature": 0.0,
    }


def _judge_body(row: dict, images: Path, template: str, response: str) -> dict:
    """What the gpt4o judge sends: image first, then the rendered prompt."""
    text = (
        template.replace("{query}", row["query"])
        .replace("{safety_label}", "safe" if row["type"] == "SSS" else "unsafe")
        .replace("{response}", response)
    )
    body = _run_body({**row, "query": text}, images)
    body["max_tokens"] = 100
    return body


async def _bare(
    kind: str, dataset: Path, url: str, concurrency: int, out: Path, extra: str
) -> None:
    import httpx2

    rows = json.loads((dataset / "holisafe_bench.json").read_text(encoding="utf-8"))
    images = dataset / "images"
    if kind == "judge":
        template = Path(extra).read_text(encoding="utf-8")
        answer = "I cannot help with that request."

        def body_of(row: dict) -> dict:
            return _judge_body(row, images, template, answer)
    else:

        def body_of(row: dict) -> dict:
            return _run_body(row, images)

    headers = {
        "authorization": f"Bearer {os.environ['OPENAI_API_KEY']}",
        "content-type": "application/json",
    }
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx2.AsyncClient(limits=limits, timeout=60) as client:
        with out.open("w", encoding="utf-8") as fh:
            sem = asyncio.Semaphore(concurrency)

            async def one(row: dict) -> None:
                try:
                    body = json.dumps(body_of(row)).encode()
                    reply = await client.post(
                        url + "/chat/completions", content=body, headers=headers
                    )
                    text = reply.json()["choices"][0]["message"]["content"]
                    fh.write(json.dumps({"id": row["id"], "text": text}) + "\n")
                finally:
                    sem.release()

            tasks = []
            for row in rows:
                await sem.acquire()
                tasks.append(asyncio.create_task(one(row)))
            await asyncio.gather(*tasks)


if __name__ == "__main__" and sys.argv[1:2] == ["bare"]:
    kind, dataset, url, conc, out, extra = sys.argv[2:8]
    asyncio.run(_bare(kind, Path(dataset), url, int(conc), Path(out), extra))
