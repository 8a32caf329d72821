"""`run --ray` scaling (issue 16): the tiny random-weight LLaVA (`tiny-llava-random`) over
N samples, end to end through the CLI (process start to exit), four ways:

- in-process: `run` as it is, no Ray;
- `--ray --max-replicas 1`: a local Ray started (and stopped) by the command, one replica;
- `--ray --max-replicas 2`: two replicas (data parallel);
- `--ray auto --max-replicas 1`: one replica on a cluster that is already up (`ray start
  --head` on 127.0.0.1 by this script, untimed), as a lab with a cluster runs it.

Every model process runs `--threads` OpenMP threads (OMP_NUM_THREADS, which a local Ray
passes on to its replicas), 1 by default: on a 2-core machine shared with other work, a
process with two OpenMP threads swings by 5x from run to run with the other load (its
threads wait for each other at every operation), which drowns what is measured here.

Beside them, a reference written here: a bare Ray program that starts a local Ray as
`--ray` does, runs one actor that answers a ping, and stops Ray; its wall time is Ray's
own fixed cost, which no harness on Ray can go below.

Wall time (median of --rounds, interleaved), CPU of the whole process tree (Ray's own
processes included), the ratios, and a check that all four wrote the same texts.
Targets: --ray with 1 replica within 1.3x of in-process; 2 replicas faster than 1.

A 2-core CPU machine and a model of a few MB: this measures the harness's overhead (Ray's
start, shipping images to the replicas, results back) and CPU data parallelism, not a real
model on GPUs.

Ray must only reach 127.0.0.1: as root, the script runs itself again in a private network
namespace (unshare -n); otherwise run it inside one.

The tiny model's random weights almost never stop: every answer runs to max_tokens, so
`--max-tokens` sets how much of the time is generation (the data-parallel part) against
the fixed costs (process and Ray start, model load). The default is the HoliSafe
protocol's 512 (HOLISAFE.md; about 5 minutes a round here); `--max-tokens 24`, the tiny
model file's own limit, is a quick run where those fixed costs are most of the time.

Run: .venv/bin/python benchmarks/ray_scaling.py [--n 400] [--rounds 1] [--threads 1]
     [--max-tokens 512]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _e2e import CLI, bench_env, timed, write_dataset  # noqa: E402

from holisafe_bench.testing.ray_testing import NAMESPACE_COMMAND, loopback_only  # noqa: E402

MODEL = "tiny-llava-random"
PROTOCOL_MAX_TOKENS = 512  # HOLISAFE.md: the authors' max_new_tokens
WAYS = {
    "in-process": [],
    "ray, 1 replica": ["--ray", "--max-replicas", "1"],
    "ray, 2 replicas": ["--ray", "--max-replicas", "2"],
    # As a lab runs it: the cluster is up (here `ray start --head` by this script, untimed,
    # just before this way), so the command connects instead of starting and stopping Ray.
    "cluster, 1 replica": ["--ray", "auto", "--max-replicas", "1"],
}


def _isolate() -> None:
    """Run again inside a private network namespace (root only)."""
    if loopback_only():
        return
    if os.geteuid() != 0 or not shutil.which("unshare"):
        command = NAMESPACE_COMMAND.replace("CMD", ".venv/bin/python benchmarks/ray_scaling.py")
        raise SystemExit(f"run this in a private network namespace: {command}")
    inner = " ".join([sys.executable, *map(_quote, sys.argv)])
    os.execvp("unshare", ["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {inner}"])


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


BARE = "bare Ray start, 1 actor, stop (reference)"
# The reference: Ray started and stopped by the harness's own `connect` (what `--ray` does),
# with one actor (a worker process) in between, and nothing else.
BARE_RAY = """
import ray
from holisafe_bench.distributed.ray_cluster import connect
connection = connect(None)
@ray.remote
class Replica:
    def ping(self):
        return 1
assert ray.get(Replica.remote().ping.remote()) == 1
connection.close()
"""


def _untimed(cmd: list[str], env: dict[str, str]) -> None:
    if subprocess.run(cmd, env=env, check=False).returncode != 0:
        raise SystemExit(f"the warm-up run failed: {' '.join(cmd)}")


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _start_head(env: dict[str, str]) -> None:
    """A one-node cluster on 127.0.0.1 with this machine's CPUs, for the "cluster" way; its
    workers inherit `env` (one OpenMP thread, the bytecode cache) as a lab's would its own."""
    command = [_ray_cli(), "start", "--head", "--node-ip-address=127.0.0.1"]
    command += ["--include-dashboard=false", "--disable-usage-stats"]
    subprocess.run(command, env=env, check=True, capture_output=True)


def _stop_head(env: dict[str, str]) -> None:
    subprocess.run([_ray_cli(), "stop", "--force"], env=env, check=False, capture_output=True)


def _texts(results: Path) -> dict[int, str]:
    lines = (results / MODEL / "responses.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len({r["sample_id"] for r in records}), "a sample written twice"
    return {r["sample_id"]: r["text"] for r in records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per process")
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=PROTOCOL_MAX_TOKENS,
        help="run --max-tokens (default: the HoliSafe protocol's 512)",
    )
    args = parser.parse_args()
    _isolate()
    env = {**bench_env(), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["OMP_NUM_THREADS"] = str(args.threads)
    print(
        f"{MODEL}, {args.n} samples, {os.cpu_count()} CPUs, {args.threads} thread(s) per "
        f"model process, max tokens {args.max_tokens}, {args.rounds} round(s), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        data = write_dataset(Path(tmp) / "data", args.n, "96x72")
        # Once untimed, both ways: the model is built, bytecode and page caches are warm.
        warm = [*CLI, "run", "-m", MODEL, "-d", str(data), "--limit", "2"]
        for extra in ([], ["--ray"]):
            _untimed([*warm, "--results", f"{tmp}/warm{len(extra)}", *extra], env)
        walls: dict[str, list[float]] = {way: [] for way in [*WAYS, BARE]}
        cpus: dict[str, list[float]] = {way: [] for way in [*WAYS, BARE]}
        texts: dict[str, dict[int, str]] = {}
        for round_ in range(args.rounds):
            for index, (way, extra) in enumerate(WAYS.items()):
                out = Path(tmp) / f"round{round_}-way{index}"
                cmd = [*CLI, "run", "-m", MODEL, "-d", str(data), "--results", str(out), *extra]
                cmd += ["--max-tokens", str(args.max_tokens)]
                if "auto" in extra:  # the cluster is up before, and only for, this way
                    _start_head(env)
                    _untimed([*warm, "--results", f"{out}-warm", *extra], env)
                try:
                    wall, cpu = timed(cmd, env)
                finally:
                    if "auto" in extra:
                        _stop_head(env)
                walls[way].append(wall)
                cpus[way].append(cpu)
                texts[way] = _texts(out)
            wall, cpu = timed([sys.executable, "-c", BARE_RAY], env)
            walls[BARE].append(wall)
            cpus[BARE].append(cpu)
        _report(walls, cpus, args.n)
        same = all(texts[way] == texts["in-process"] for way in WAYS)
        print(f"  same texts in all four: {same} ({len(texts['in-process'])} samples)")
        print(f"  load average at the end: {os.getloadavg()[0]:.1f}")


def _report(walls: dict[str, list[float]], cpus: dict[str, list[float]], n: int) -> None:
    base = statistics.median(walls["in-process"])
    one = statistics.median(walls["ray, 1 replica"])
    # CPU: the command's process tree; a local Ray's own processes are not its children.
    print(f"  {'':18s} {'wall s':>8s} {'CPU s':>8s} {'samples/s':>10s} {'vs in-process':>14s}")
    for way in WAYS:
        wall, cpu = statistics.median(walls[way]), statistics.median(cpus[way])
        print(f"  {way:18s} {wall:8.2f} {cpu:8.2f} {n / wall:10.2f} {wall / base:13.2f}x")
    two = statistics.median(walls["ray, 2 replicas"])
    running = statistics.median(walls["cluster, 1 replica"])
    bare = statistics.median(walls[BARE])
    print(f"  ray 1 replica / in-process: {one / base:.2f}x (target <= 1.3x)")
    print(
        f"  {BARE}: {bare:.2f} s wall ({bare / base:.2f} of the in-process time), "
        f"{statistics.median(cpus[BARE]):.2f} s CPU"
    )
    print(f"  running cluster, 1 replica / in-process: {running / base:.2f}x")
    print(f"  ray 2 replicas vs 1: {one / two:.2f}x faster (target > 1)")


if __name__ == "__main__":
    main()
