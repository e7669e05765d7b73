"""A tiny in-process stand-in for the Hugging Face Hub, on 127.0.0.1 only.

It implements just what the real `huggingface_hub` client (2.x) calls to create a repo or a
branch, commit files and download one back:

    POST /api/repos/create                           create_repo (409 when it exists)
    POST /api/{type}s/{repo}/branch/{branch}         create_branch (409 when it exists)
    POST /api/validate-yaml                          create_commit, when README.md is added
    POST /api/{type}s/{repo}/preupload/{rev}         create_commit: every file is "regular", so its
                                                     bytes travel base64-encoded in the commit
    POST /api/{type}s/{repo}/commit/{rev}            create_commit (ndjson)
    HEAD|GET /[{type}s/]{repo}/resolve/{rev}/{path}  hf_hub_download

`FakeHub.fail_next(kind, status)` makes the next request of a kind ("create", "branch",
"preupload", "commit", "resolve") answer `status` once, to exercise retries.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_API = re.compile(
    r"/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)/(?P<kind>preupload|commit|branch)/(?P<rev>[^/?]+)"
)
_RESOLVE = re.compile(r"/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)")


class FakeHub:
    """Repos live in memory: ``repos[(type, repo_id)] = {branch: {path: bytes}}``.

    Args:
        token (`str`, *optional*): when set, writes without ``Authorization: Bearer <token>`` get 401.
    """

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.repos: dict[tuple[str, str], dict[str, dict[str, bytes]]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path), in arrival order
        self.commits: list[dict] = []  # header of each commit received
        self.heads: dict[tuple[str, str, str], str] = {}  # (type, repo_id, branch) -> commit oid
        self._failures: dict[str, list[int]] = defaultdict(list)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, kind: str, status: int, times: int = 1) -> None:
        self._failures[kind] += [status] * times

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        return dict(self.repos[(repo_type, repo_id)][revision])

    def export(self, repo_id: str, dest: Path, revision: str = "main") -> Path:
        """Write a repo's files into `dest`, laid out as in the repo (a local clone)."""
        for path, content in self.files(repo_id, revision).items():
            (dest / path).parent.mkdir(parents=True, exist_ok=True)
            (dest / path).write_bytes(content)
        return dest

    # -- request handling ------------------------------------------------------------------

    def handle(self, method: str, path: str, headers, body: bytes) -> tuple[int, dict, bytes]:
        self.requests.append((method, path))
        kind, match = _route(method, path)
        if kind is None:
            return _error(404, "NotFound", f"fake hub has no route for {method} {path}")
        if self._failures[kind]:
            return _error(self._failures[kind].pop(0), "Injected", f"injected failure of {kind}")
        if method == "POST" and self.token and headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "Unauthorized", "Invalid credentials in Authorization header")
        with self._lock:
            return getattr(self, f"_{kind}")(match, headers, body)

    def _create(self, match, headers, body):
        payload = json.loads(body)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload['organization'] or 'user'}/{payload['name']}"
        url = f"{self.url}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
        if (repo_type, repo_id) in self.repos:
            return _error(409, "Conflict", "You already created this repo", extra={"url": url})
        self.repos[(repo_type, repo_id)] = {"main": {}}
        return _json(200, {"url": url, "name": repo_id})

    def _branch(self, match, headers, body):
        repo = self._repo(match)
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")
        branch = unquote(match["rev"])
        if branch in repo:
            return _error(409, "Conflict", "Branch already exists")
        repo[branch] = dict(repo["main"])
        repo_type = match["type"][:-1]
        self.heads[(repo_type, match["repo"], branch)] = self.heads.get((repo_type, match["repo"], "main"), "0" * 40)
        return _json(200, {})

    def _validate_yaml(self, match, headers, body):
        return _json(200, {"errors": [], "warnings": []})

    def _preupload(self, match, headers, body):
        if self._repo(match) is None:
            return _error(404, "RepoNotFound", "Repository not found")
        files = json.loads(body)["files"]
        modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
        return _json(200, {"files": modes})

    def _commit(self, match, headers, body):
        repo, rev = self._repo(match), unquote(match["rev"])
        if repo is None or rev not in repo:
            return _error(404, "RepoNotFound" if repo is None else "RevisionNotFound", "Not found")
        files = dict(repo[rev])
        for line in body.decode().splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                self.commits.append(value)
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"])
            elif key == "deletedFolder":
                files = {p: c for p, c in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                return _error(400, "BadRequest", f"fake hub does not support {key!r} operations")
        repo[rev] = files
        oid = hashlib.sha1(f"{match['repo']}@{rev}#{len(self.commits)}".encode()).hexdigest()
        self.heads[(match["type"][:-1], match["repo"], rev)] = oid  # clients cache downloads by commit
        prefix = "" if match["type"] == "models" else f"{match['type']}/"
        return _json(200, {"commitUrl": f"{self.url}/{prefix}{match['repo']}/commit/{oid}", "commitOid": oid})

    def _resolve(self, match, headers, body):
        repo, rev = self._repo(match), unquote(match["rev"])
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")
        if rev not in repo:
            return _error(404, "RevisionNotFound", "Revision not found")
        content = repo[rev].get(unquote(match["path"]))
        if content is None:
            return _error(404, "EntryNotFound", "Entry not found")
        etag = hashlib.sha1(content).hexdigest()
        head = self.heads[((match["type"] or "models")[:-1], match["repo"], rev)]
        return 200, {"ETag": f'"{etag}"', "X-Repo-Commit": head, "Content-Type": "application/octet-stream"}, content

    def _repo(self, match):
        repo_type = (match["type"] or "models")[:-1]
        return self.repos.get((repo_type, match["repo"]))


def _route(method: str, path: str):
    path = urlsplit(path).path
    if method == "POST" and path == "/api/repos/create":
        return "create", None
    if method == "POST" and path == "/api/validate-yaml":
        return "validate_yaml", None
    if method == "POST" and (match := _API.fullmatch(path)):
        return match["kind"], match
    if method in ("HEAD", "GET") and (match := _RESOLVE.fullmatch(path)):
        return "resolve", match
    return None, None


def _json(status: int, payload: dict) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def _error(status: int, code: str, message: str, extra: dict | None = None) -> tuple[int, dict, bytes]:
    status, headers, body = _json(status, {"error": message, **(extra or {})})
    return status, {**headers, "X-Error-Code": code, "X-Error-Message": message}, body


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, payload = hub.handle(self.command, self.path, self.headers, body)
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(payload))}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_HEAD = do_POST = _serve

        def log_message(self, format, *args) -> None:  # keep test output clean
            pass

    return Handler
