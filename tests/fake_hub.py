"""A tiny in-process stand-in for the Hugging Face Hub, on 127.0.0.1 only.

It implements just what the real `huggingface_hub` client (2.x) calls to create a repo or a
branch, read its head commit and files, commit files and download one back:

    POST /api/repos/create                           create_repo (409 when it exists)
    POST /api/{type}s/{repo}/branch/{branch}         create_branch (409 when it exists)
    GET /api/{type}s/{repo}[/revision/{rev}]         repo_info: ``sha`` of the head commit
    GET /api/{type}s/{repo}/tree/{rev}[/{path}]      list_repo_tree / list_repo_files
    POST /api/validate-yaml                          create_commit, when README.md is added
    POST /api/{type}s/{repo}/preupload/{rev}         create_commit: every file is "regular", so its
                                                     bytes travel base64-encoded in the commit
    POST /api/{type}s/{repo}/commit/{rev}            create_commit (ndjson); 412 when the header's
                                                     ``parentCommit`` is not the branch head, 404
                                                     when a deleted file does not exist
    HEAD|GET /[{type}s/]{repo}/resolve/{rev}/{path}  hf_hub_download; `rev` a branch or a commit

`FakeHub.fail_next(kind, status)` makes the next request of a kind ("create", "branch", "info",
"tree", "validate_yaml", "preupload", "commit", "resolve") answer `status` once, to exercise
retries; with ``applied=True`` the request is carried out first and only its answer is lost.
Status `DROP` closes the connection without an answer; ``html=True`` answers a proxy's HTML
error page instead of the Hub's JSON. `FakeHub.created` keeps each create request's payload
(``visibility`` / ``private`` included).
`FakeHub.before_next(kind, hook)` calls `hook()` once when the next request of a kind arrives,
before handling it: another client's commit landing in between, say.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_API = re.compile(
    r"/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)/(?P<kind>preupload|commit|branch)/(?P<rev>[^/?]+)"
)
_INFO = re.compile(r"/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?")
_TREE = re.compile(r"/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?")
_RESOLVE = re.compile(r"/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)")


DROP = 0  # `fail_next` status: close the connection without answering


class FakeHub:
    """Repos live in memory: ``repos[(type, repo_id)] = {branch: {path: bytes}}``, and every
    commit's files in ``snapshots[oid]`` (a branch's dict is its head's snapshot).

    Args:
        token (`str`, *optional*): when set, writes without ``Authorization: Bearer <token>`` get 401.
    """

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.repos: dict[tuple[str, str], dict[str, dict[str, bytes]]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path), in arrival order
        self.commits: list[dict] = []  # header of each commit accepted
        self.heads: dict[tuple[str, str, str], str] = {}  # (type, repo_id, branch) -> commit oid
        self.snapshots: dict[str, dict[str, bytes]] = {}  # commit oid -> files
        self.created: list[dict] = []  # payload of each create request
        self._failures: dict[str, list[tuple[int, bool, bool]]] = defaultdict(list)
        self._hooks: dict[str, list[Callable[[], None]]] = defaultdict(list)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, kind: str, status: int, times: int = 1, applied: bool = False, html: bool = False) -> None:
        self._failures[kind] += [(status, applied, html)] * times

    def before_next(self, kind: str, hook: Callable[[], None]) -> None:
        self._hooks[kind].append(hook)

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        return dict(self.repos[(repo_type, repo_id)][revision])

    def export(self, repo_id: str, dest: Path, revision: str = "main") -> Path:
        """Write a repo's files into `dest`, laid out as in the repo (a local clone)."""
        for path, content in self.files(repo_id, revision).items():
            (dest / path).parent.mkdir(parents=True, exist_ok=True)
            (dest / path).write_bytes(content)
        return dest

    # -- request handling ------------------------------------------------------------------

    def handle(self, method: str, path: str, headers, body: bytes) -> tuple[int, dict, bytes] | None:
        """The answer (status, headers, body), or `None` to close the connection without one."""
        self.requests.append((method, path))
        kind, match = _route(method, path)
        if kind is None:
            return _error(404, "NotFound", f"fake hub has no route for {method} {path}")
        if self._hooks[kind]:
            self._hooks[kind].pop(0)()  # outside the lock: the hook may talk to this hub
        status, applied, html = self._failures[kind].pop(0) if self._failures[kind] else (None, False, False)
        if status is not None and not applied:
            return _failure(status, kind, html)
        if method == "POST" and self.token and headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "Unauthorized", "Invalid credentials in Authorization header")
        with self._lock:
            answer = getattr(self, f"_{kind}")(match, headers, body)
        return _failure(status, kind, html) if status is not None else answer

    def _create(self, match, headers, body):
        payload = json.loads(body)
        self.created.append(payload)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload['organization'] or 'user'}/{payload['name']}"
        url = f"{self.url}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
        if (repo_type, repo_id) in self.repos:
            return _error(409, "Conflict", "You already created this repo", extra={"url": url})
        self.repos[(repo_type, repo_id)] = {"main": {}}
        oid = hashlib.sha1(f"{repo_type}/{repo_id}@initial".encode()).hexdigest()
        self.heads[(repo_type, repo_id, "main")], self.snapshots[oid] = oid, self.repos[(repo_type, repo_id)]["main"]
        return _json(200, {"url": url, "name": repo_id})

    def _branch(self, match, headers, body):
        repo = self._repo(match)
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")
        branch = unquote(match["rev"])
        if branch in repo:
            return _error(409, "Conflict", "Branch already exists")
        repo[branch] = repo["main"]  # same head commit, same snapshot; commits replace the dict
        repo_type = match["type"][:-1]
        self.heads[(repo_type, match["repo"], branch)] = self.heads[(repo_type, match["repo"], "main")]
        return _json(200, {})

    def _info(self, match, headers, body):
        repo, rev = self._repo(match), unquote(match["rev"] or "main")
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")
        if rev not in repo:
            return _error(404, "RevisionNotFound", "Revision not found")
        return _json(200, {"id": match["repo"], "sha": self.heads[(match["type"][:-1], match["repo"], rev)],
                           "private": False, "siblings": [{"rfilename": path} for path in sorted(repo[rev])]})

    def _tree(self, match, headers, body):
        files = self._snapshot(match)
        if files is None:
            return _error(404, "RevisionNotFound", "Revision not found")
        folder = unquote(match["path"] or "").strip("/")
        prefix = folder + "/" if folder else ""
        paths = sorted(path for path in files if path.startswith(prefix))
        if folder and not paths:
            return _error(404, "EntryNotFound", f"{folder} does not exist")
        entries = [{"type": "file", "path": path, "size": len(files[path]),  # recursive: all this fake lists
                    "oid": hashlib.sha1(files[path]).hexdigest()} for path in paths]
        return 200, {"Content-Type": "application/json"}, json.dumps(entries).encode()

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
        files, header, head = dict(repo[rev]), {}, self.heads[(match["type"][:-1], match["repo"], rev)]
        for line in body.decode().splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
                if value.get("parentCommit") not in (None, head):
                    return _error(412, "PreconditionFailed",
                                  "A commit has happened since. Please refresh and try again.")
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    return _error(404, "EntryNotFound", f"A file with this name doesn't exist: {value['path']}")
            elif key == "deletedFolder":
                files = {p: c for p, c in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                return _error(400, "BadRequest", f"fake hub does not support {key!r} operations")
        self.commits.append(header)
        repo[rev] = files
        oid = hashlib.sha1(f"{match['repo']}@{rev}#{len(self.commits)}".encode()).hexdigest()
        self.heads[(match["type"][:-1], match["repo"], rev)] = oid  # clients cache downloads by commit
        self.snapshots[oid] = files
        prefix = "" if match["type"] == "models" else f"{match['type']}/"
        return _json(200, {"commitUrl": f"{self.url}/{prefix}{match['repo']}/commit/{oid}", "commitOid": oid})

    def _resolve(self, match, headers, body):
        if self._repo(match) is None:
            return _error(404, "RepoNotFound", "Repository not found")
        files = self._snapshot(match)
        if files is None:
            return _error(404, "RevisionNotFound", "Revision not found")
        content = files.get(unquote(match["path"]))
        if content is None:
            return _error(404, "EntryNotFound", "Entry not found")
        etag = hashlib.sha1(content).hexdigest()
        rev = unquote(match["rev"])
        head = self.heads.get(((match["type"] or "models")[:-1], match["repo"], rev), rev)
        return 200, {"ETag": f'"{etag}"', "X-Repo-Commit": head, "Content-Type": "application/octet-stream"}, content

    def _repo(self, match):
        repo_type = (match["type"] or "models")[:-1]
        return self.repos.get((repo_type, match["repo"]))

    def _snapshot(self, match) -> dict[str, bytes] | None:
        """The files at ``match["rev"]``, a branch of the repo or a commit oid (`None` when neither)."""
        repo, rev = self._repo(match), unquote(match["rev"])
        if repo is None:
            return None
        return repo[rev] if rev in repo else self.snapshots.get(rev)


def _route(method: str, path: str):
    path = urlsplit(path).path
    if method == "POST" and path == "/api/repos/create":
        return "create", None
    if method == "POST" and path == "/api/validate-yaml":
        return "validate_yaml", None
    if method == "POST" and (match := _API.fullmatch(path)):
        return match["kind"], match
    if method == "GET" and (match := _TREE.fullmatch(path)):
        return "tree", match
    if method == "GET" and (match := _INFO.fullmatch(path)):
        return "info", match
    if method in ("HEAD", "GET") and (match := _RESOLVE.fullmatch(path)):
        return "resolve", match
    return None, None


def _json(status: int, payload: dict) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def _error(status: int, code: str, message: str, extra: dict | None = None) -> tuple[int, dict, bytes]:
    status, headers, body = _json(status, {"error": message, **(extra or {})})
    return status, {**headers, "X-Error-Code": code, "X-Error-Message": message}, body


def _failure(status: int, kind: str, html: bool) -> tuple[int, dict, bytes] | None:
    if status == DROP:
        return None
    if html:
        return status, {"Content-Type": "text/html"}, f"<html><body>{status} from a proxy</body></html>".encode()
    return _error(status, "Injected", f"injected failure of {kind}")


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            answer = hub.handle(self.command, self.path, self.headers, body)
            if answer is None:
                self.close_connection = True
                return
            status, headers, payload = answer
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
