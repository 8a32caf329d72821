"""Fake batch APIs of OpenAI (files + batches), Anthropic (Message Batches, results at an
absolute results_url) and Gemini (inline batchGenerateContent), one server per vendor.

A `plan(index, text)` decides each request's fate: ("ok", reply text), ("error", message),
("blocked", ""), ("missing", "") (left out of the results), or, for OpenAI and Anthropic,
("malformed", "") (a broken line in the results file). Jobs finish after
`polls_until_done` status requests; `job_failure` makes them end failed/expired."""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from holisafe_bench.testing.fake_server import FakeRequest, FakeResponse, FakeServer
from holisafe_bench.testing.fake_vendors import anthropic_message, gemini_reply, openai_completion

Plan = Callable[[int, str], tuple[str, str]]
_ids = itertools.count(1)


def all_true(index: int, text: str) -> tuple[str, str]:
    return "ok", "<label>True</label>"


@dataclass
class FakeBatches:
    server: FakeServer
    plan: Plan = all_true
    polls_until_done: int = 1
    job_failure: str | None = None  # e.g. "failed", "expired"
    jobs: dict[str, dict] = field(default_factory=dict)
    fates: dict[str, str] = field(default_factory=dict)  # custom id -> kind
    replies: dict[str, str] = field(default_factory=dict)  # custom id -> reply text

    @property
    def submissions(self) -> int:
        return len(self.jobs)

    def _decide(self, job: dict, custom_id: str, text: str) -> tuple[str, str]:
        kind, reply = self.plan(len(self.fates), text)
        self.fates[custom_id] = kind
        if kind == "ok":
            self.replies[custom_id] = reply
        job.setdefault("items", []).append((custom_id, kind, reply))
        return kind, reply

    def _poll(self, job: dict) -> bool:
        """Count a status request; True once the job has finished."""
        job["polls"] = job.get("polls", 0) + 1
        return job["polls"] >= self.polls_until_done


def _multipart_file(req: FakeRequest) -> bytes:
    raw = b"content-type: " + req.headers["content-type"].encode() + b"\r\n\r\n" + req.body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True)
    raise AssertionError("no file part in the upload")


def openai_batches(**kwargs) -> FakeBatches:
    # Long: one nested handler per endpoint of the batch flow, kept together to read as one.
    fake = FakeBatches(FakeServer(), **kwargs)
    files: dict[str, bytes] = {}
    server = fake.server

    @server.route("POST", r"/v1/files")
    def upload(req: FakeRequest) -> FakeResponse:
        file_id = f"file-{next(_ids)}"
        files[file_id] = _multipart_file(req)
        return FakeResponse(
            body={
                "id": file_id,
                "object": "file",
                "bytes": len(files[file_id]),
                "created_at": 0,
                "filename": "input.jsonl",
                "purpose": "batch",
                "status": "processed",
            }
        )

    def batch_body(job_id: str) -> dict:
        job = fake.jobs[job_id]
        n = len(job["lines"])
        return {
            "id": job_id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": job["input"],
            "completion_window": "24h",
            "created_at": 0,
            "status": job["status"],
            "output_file_id": job.get("output"),
            "error_file_id": job.get("errors"),
            "request_counts": {
                "total": n,
                "completed": n if job["status"] == "completed" else 0,
                "failed": 0,
            },
        }

    @server.route("POST", r"/v1/batches")
    def create(req: FakeRequest) -> FakeResponse:
        body = req.json()
        assert body["endpoint"] == "/v1/chat/completions"
        lines = [json.loads(x) for x in files[body["input_file_id"]].splitlines() if x.strip()]
        job_id = f"batch_{next(_ids)}"
        fake.jobs[job_id] = {"lines": lines, "input": body["input_file_id"], "status": "validating"}
        return FakeResponse(body=batch_body(job_id))

    @server.route("GET", r"/v1/batches/(?P<id>[^/?]+)")
    def retrieve(req: FakeRequest) -> FakeResponse:
        job_id = req.match["id"]
        job = fake.jobs[job_id]
        if job["status"] in ("validating", "in_progress"):
            job["status"] = "in_progress"
            if fake._poll(job):
                _finish_openai(fake, job, files)
        return FakeResponse(body=batch_body(job_id))

    @server.route("GET", r"/v1/files/(?P<id>[^/]+)/content")
    def content(req: FakeRequest) -> FakeResponse:
        return FakeResponse(body=files[req.match["id"]])

    return fake


def _finish_openai(fake: FakeBatches, job: dict, files: dict[str, bytes]) -> None:
    if fake.job_failure:
        job["status"] = fake.job_failure
        return
    out, errors = [], []
    for line in job["lines"]:
        custom_id = line["custom_id"]
        text = line["body"]["messages"][-1]["content"][-1]["text"]
        kind, reply = fake._decide(job, custom_id, text)
        if kind == "ok":
            response = {"status_code": 200, "body": openai_completion(line["body"]["model"], reply)}
            out.append({"id": "r", "custom_id": custom_id, "response": response, "error": None})
        elif kind == "blocked":
            body = {"error": {"code": "content_policy_violation", "message": "blocked"}}
            response = {"status_code": 400, "body": body}
            errors.append({"id": "r", "custom_id": custom_id, "response": response, "error": None})
        elif kind == "error":
            response = {"status_code": 500, "body": {"error": {"message": reply}}}
            errors.append({"id": "r", "custom_id": custom_id, "response": response, "error": None})
        elif kind == "malformed":
            out.append('{"custom_id": "' + custom_id + '", "response": {"status_co')
    job["status"] = "completed"
    out.reverse()  # the real output file is not in request order either
    for name, rows in (("output", out), ("errors", errors)):
        if rows:
            file_id = f"file-{next(_ids)}"
            lines = (r if isinstance(r, str) else json.dumps(r) for r in rows)
            files[file_id] = "".join(line + "\n" for line in lines).encode()
            job[name] = file_id


def anthropic_batches(**kwargs) -> FakeBatches:
    # Long: one nested handler per endpoint of the batch flow, kept together to read as one.
    fake = FakeBatches(FakeServer(), **kwargs)
    server = fake.server

    def batch_body(job_id: str) -> dict:
        job = fake.jobs[job_id]
        ended = job["status"] == "ended"
        n = len(job["requests"])
        counts = {"processing": 0 if ended else n, "succeeded": 0, "errored": 0}
        counts |= {"canceled": 0, "expired": 0}
        if ended:
            counts["succeeded"] = n
        return {
            "id": job_id,
            "type": "message_batch",
            "processing_status": job["status"],
            "request_counts": counts,
            "created_at": "2026-11-22T00:00:00Z",
            "expires_at": "2026-11-23T00:00:00Z",
            "ended_at": "2026-11-22T01:00:00Z" if ended else None,
            "archived_at": None,
            "cancel_initiated_at": None,
            # An absolute URL on this server, as the real API gives its own host.
            "results_url": f"{server.base_url}/v1/messages/batches/{job_id}/results"
            if ended
            else None,
        }

    @server.route("POST", r"/v1/messages/batches")
    def create(req: FakeRequest) -> FakeResponse:
        job_id = f"msgbatch_{next(_ids)}"
        fake.jobs[job_id] = {"requests": req.json()["requests"], "status": "in_progress"}
        return FakeResponse(body=batch_body(job_id))

    @server.route("GET", r"/v1/messages/batches/(?P<id>[^/?]+)")
    def retrieve(req: FakeRequest) -> FakeResponse:
        job = fake.jobs[req.match["id"]]
        if job["status"] == "in_progress" and fake._poll(job):
            job["status"] = "ended"
        return FakeResponse(body=batch_body(req.match["id"]))

    @server.route("GET", r"/v1/messages/batches/(?P<id>[^/?]+)/results")
    def results(req: FakeRequest) -> FakeResponse:
        job = fake.jobs[req.match["id"]]
        lines = []
        for request in job["requests"]:
            custom_id, params = request["custom_id"], request["params"]
            if fake.job_failure:
                lines.append({"custom_id": custom_id, "result": {"type": fake.job_failure}})
                continue
            text = params["messages"][-1]["content"][-1]["text"]
            kind, reply = fake._decide(job, custom_id, text)
            if kind == "ok":
                result = {"type": "succeeded", "message": anthropic_message(params["model"], reply)}
            elif kind == "blocked":
                message = anthropic_message(params["model"], "", stop="refusal")
                result = {"type": "succeeded", "message": message}
            elif kind == "error":
                error = {"type": "api_error", "message": reply}
                result = {"type": "errored", "error": {"type": "error", "error": error}}
            elif kind == "malformed":
                lines.append('{"custom_id": "' + custom_id + '", "result": {"ty')
                continue
            else:
                continue
            lines.append({"custom_id": custom_id, "result": result})
        lines.reverse()  # results are not in request order (Anthropic's documentation)
        text = (x if isinstance(x, str) else json.dumps(x) for x in lines)
        return FakeResponse(body="".join(line + "\n" for line in text).encode())

    return fake


def gemini_batches(**kwargs) -> FakeBatches:
    fake = FakeBatches(FakeServer(), **kwargs)
    server = fake.server

    def job_body(job_id: str) -> dict:
        job = fake.jobs[job_id]
        metadata: dict = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": job["model"],
            "state": job["state"],
        }
        if job["state"] == "BATCH_STATE_SUCCEEDED":
            metadata["output"] = {"inlinedResponses": {"inlinedResponses": job["responses"]}}
        return {"name": f"batches/{job_id}", "metadata": metadata}

    @server.route("POST", r"/v1(beta)?/models/(?P<model>[^/:]+):batchGenerateContent")
    def create(req: FakeRequest) -> FakeResponse:
        requests = req.json()["batch"]["inputConfig"]["requests"]["requests"]
        job_id = f"job{next(_ids)}"
        fake.jobs[job_id] = {
            "requests": requests,
            "state": "BATCH_STATE_PENDING",
            "model": f"models/{req.match['model']}",
        }
        return FakeResponse(body=job_body(job_id))

    @server.route("GET", r"/v1(beta)?/batches/(?P<id>[^/?]+)")
    def get(req: FakeRequest) -> FakeResponse:
        job_id = req.match["id"]
        job = fake.jobs[job_id]
        if job["state"] == "BATCH_STATE_PENDING" and fake._poll(job):
            if fake.job_failure:
                job["state"] = f"BATCH_STATE_{fake.job_failure.upper()}"
            else:
                job["state"] = "BATCH_STATE_SUCCEEDED"
                job["responses"] = _gemini_responses(fake, job)
        return FakeResponse(body=job_body(job_id))

    return fake


def _gemini_responses(fake: FakeBatches, job: dict) -> list[dict]:
    out = []
    for item in job["requests"]:
        metadata = item.get("metadata") or {}
        custom_id = metadata.get("holisafe_key", "")
        text = item["request"]["contents"][-1]["parts"][-1]["text"]
        kind, reply = fake._decide(job, custom_id, text)
        if kind == "ok":
            out.append({"response": gemini_reply(reply), "metadata": metadata})
        elif kind == "blocked":
            out.append({"response": gemini_reply("", finish="SAFETY"), "metadata": metadata})
        elif kind == "error":
            out.append({"error": {"code": 500, "message": reply}, "metadata": metadata})
    return out


VENDORS = {
    "gpt4o": (openai_batches, "OPENAI_API_KEY"),
    "claude": (anthropic_batches, "ANTHROPIC_API_KEY"),
    "gemini": (gemini_batches, "GEMINI_API_KEY"),
}
