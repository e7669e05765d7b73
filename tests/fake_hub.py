"""A tiny in-process stand-in for the Hugging Face Hub, on 127.0.0.1 only.

It implements just what the real `huggingface_hub` client (2.x) calls to create a repo or a
branch, read its head commit and files, commit files and download one back, and what
`datasets.load_dataset_builder` and `HfFileSystem` (``hf://`` paths) call to read a dataset repo:

    POST /api/repos/create                           create_repo (409 when it exists)
    POST /api/{type}s/{repo}/branch/{branch}         create_branch (409 when it exists, 400 for a
                                                     ``refs/...`` name such as ``refs/pr/5``)
    GET /api/{type}s/{repo}/refs[?include_prs=1]     list_repo_refs: branches, tags, pull requests
    GET /api/{type}s/{repo}[/revision/{rev}]         repo_info: ``sha`` of `rev` (a branch, tag or commit
                                                     sha), ``siblings`` (``?blobs=true``: with sizes);
                                                     ``?expand=...`` answers ``_id``, ``id`` and those only
    GET /api/{type}s/{repo}/tree/{rev}[/{path}]      list_repo_tree: the folder's children, files and
                                                     directories (``?recursive=true``: all below it;
                                                     ``?expand=true``: with ``lastCommit``)
    POST /api/{type}s/{repo}/paths-info/{rev}        get_paths_info (form ``paths``, ``expand``): the
                                                     entries that exist, files or directories
    POST /api/validate-yaml                          create_commit, when README.md is added
    POST /api/{type}s/{repo}/preupload/{rev}         create_commit: every file is "regular", so its
                                                     bytes travel base64-encoded in the commit
    POST /api/{type}s/{repo}/commit/{rev}            create_commit (ndjson); 412 when the header's
                                                     ``parentCommit`` is not the branch head, 404
                                                     when a deleted file does not exist
    HEAD|GET /[{type}s/]{repo}/resolve/{rev}/{path}  hf_hub_download, HfFileSystem reads; `rev` a branch,
                                                     tag or commit; ``X-Repo-Commit`` (on a 404 too),
                                                     ``ETag`` (the git blob oid), ``Range: bytes=a-b`` -> 206

Files are "regular" git blobs (no LFS or Xet), so ``oid``/``ETag`` are git blob oids.
`FakeHub.put(repo_id, files)` commits straight into a repo (created when missing), as another
client pushing to it would; `FakeHub.tag(repo_id, name)` tags a revision; `FakeHub.open_pr(repo_id)`
opens a pull request, a ref ``refs/pr/N`` that commits go to as to a branch (not a branch itself).

`FakeHub.fail_next(kind, status)` makes the next request of a kind ("create", "branch", "info",
"refs", "tree", "paths_info", "validate_yaml", "preupload", "commit", "resolve") answer `status` once, to exercise
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
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

_API = re.compile(
    r"/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)/(?P<kind>preupload|commit|branch|paths-info)/(?P<rev>[^/?]+)"
)
_INFO = re.compile(r"/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?")
_REFS = re.compile(r"/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)/refs")
_TREE = re.compile(r"/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?")
_RESOLVE = re.compile(r"/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)")


_WRITES = ("create", "branch", "validate_yaml", "preupload", "commit")
DROP = 0  # `fail_next` status: close the connection without answering
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)  # commit n is dated n minutes after it


class FakeHub:
    """Repos live in memory: ``repos[(type, repo_id)] = {branch: {path: bytes}}``, and every
    commit's files in ``snapshots[oid]`` (a branch's dict is its head's snapshot).

    Args:
        token (`str`, *optional*): when set, writes without ``Authorization: Bearer <token>`` get 401, and
            so do reads of a private repo (`put(..., private=True)`), as the Hub answers them (RepoNotFound).
        read_token (`str`, *optional*): a read-only token: it reads what `token` reads, and its writes
            get 403, as the Hub answers a fine-grained or read token without write access.
    """

    def __init__(self, token: str | None = None, read_token: str | None = None) -> None:
        self.token, self.read_token = token, read_token
        self.repos: dict[tuple[str, str], dict[str, dict[str, bytes]]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path), in arrival order
        self.commits: list[dict] = []  # header of each commit accepted
        self.heads: dict[tuple[str, str, str], str] = {}  # (type, repo_id, branch) -> commit oid
        self.snapshots: dict[str, dict[str, bytes]] = {}  # commit oid -> files
        self.parents: dict[str, str | None] = {}  # commit oid -> parent commit oid
        self.owners: dict[str, tuple[str, str]] = {}  # commit oid -> (type, repo_id)
        self.titles: dict[str, str] = {}  # commit oid -> title
        self.dates: dict[str, str] = {}  # commit oid -> ISO date
        self.tags: dict[tuple[str, str, str], str] = {}  # (type, repo_id, tag) -> commit oid
        self.private: set[tuple[str, str]] = set()  # (type, repo_id) of private repos
        self.ranges: list[tuple[str, str]] = []  # (path, Range header) of each ranged resolve request
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

    def put(self, repo_id: str, files: dict[str, bytes | str], delete: tuple[str, ...] = (), branch: str = "main",
            repo_type: str = "dataset", title: str = "Upload files", private: bool = False) -> str:
        """Commit `files` (str is UTF-8 encoded) and deletions to `branch`, creating the repo when
        missing (`private`: only readable with the hub's token), as a push by another client would;
        the new commit's oid."""
        with self._lock:
            if private:
                self.private.add((repo_type, repo_id))
            repo = self.repos.setdefault((repo_type, repo_id), {})
            old = repo.get(branch, {})
            new = {**old, **{path: c.encode() if isinstance(c, str) else c for path, c in files.items()}}
            for path in delete:
                del new[path]
            parent = self.heads.get((repo_type, repo_id, branch))
            return self._new_commit(repo_type, repo_id, branch, new, parent, title)

    def tag(self, repo_id: str, tag: str, revision: str = "main", repo_type: str = "dataset") -> str:
        """Tag `revision` (a branch or commit) as `tag`; its commit oid."""
        oid = self._commit_of(repo_type, repo_id, revision)
        assert oid is not None, revision
        self.tags[(repo_type, repo_id, tag)] = oid
        return oid

    def open_pr(self, repo_id: str, repo_type: str = "dataset") -> str:
        """Open a pull request on main, as `HfApi.create_pull_request` does; its ref, ``refs/pr/N``."""
        with self._lock:
            repo = self.repos[(repo_type, repo_id)]
            ref = f"refs/pr/{1 + sum(name.startswith('refs/pr/') for name in repo)}"
            repo[ref] = repo["main"]
            self.heads[(repo_type, repo_id, ref)] = self.heads[(repo_type, repo_id, "main")]
            return ref

    def _new_commit(self, repo_type: str, repo_id: str, branch: str, files: dict[str, bytes],
                    parent: str | None, title: str) -> str:
        serial = len(self.snapshots)
        tree = sorted((path, _blob_oid(content)) for path, content in files.items())
        # Content-addressed, like git: two hubs (tests) never give one oid to different files, which
        # matters as clients cache downloads and listings by commit oid (HF_HUB_CACHE, HfFileSystem).
        oid = hashlib.sha1(json.dumps([repo_type, repo_id, branch, serial, parent, title, tree]).encode()).hexdigest()
        self.repos[(repo_type, repo_id)][branch] = files
        self.heads[(repo_type, repo_id, branch)] = oid  # clients cache downloads by commit
        self.snapshots[oid], self.parents[oid], self.titles[oid] = files, parent, title
        self.owners[oid] = (repo_type, repo_id)
        self.dates[oid] = (_EPOCH + timedelta(minutes=serial)).isoformat().replace("+00:00", ".000Z")
        return oid

    def _commit_of(self, repo_type: str, repo_id: str, rev: str) -> str | None:
        """The commit oid a revision names: a branch's head, a tag, or a known commit oid."""
        if (repo_type, repo_id) not in self.repos:
            return None
        oid = self.heads.get((repo_type, repo_id, rev)) or self.tags.get((repo_type, repo_id, rev))
        return oid or (rev if self.owners.get(rev) == (repo_type, repo_id) else None)

    def _last_commit(self, oid: str, path: str) -> dict:
        """``lastCommit`` of `path` at commit `oid`: the latest commit that changed it (or a file below it)."""
        def state(commit):
            files = self.snapshots[commit]
            return {p: c for p, c in files.items() if p == path or p.startswith(path + "/")}

        current = state(oid)
        while (parent := self.parents.get(oid)) is not None and state(parent) == current:
            oid = parent
        return {"id": oid, "title": self.titles.get(oid, ""), "date": self.dates.get(oid)}

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
        authorized = not self.token or headers.get("Authorization") == f"Bearer {self.token}"
        read_only = self.read_token is not None and headers.get("Authorization") == f"Bearer {self.read_token}"
        if kind in _WRITES and read_only:
            return _error(403, "Forbidden", "You don't have the rights to write to this repo")
        if kind in _WRITES and not authorized:
            return _error(401, "Unauthorized", "Invalid credentials in Authorization header")
        private = match is not None and ((match["type"] or "models")[:-1], match["repo"]) in self.private
        if private and not (authorized or read_only):
            return _error(401, "RepoNotFound", "Repository not found")  # the Hub does not tell private from missing
        with self._lock:
            answer = getattr(self, f"_{kind}")(match, headers, body, parse_qs(urlsplit(path).query))
        return _failure(status, kind, html) if status is not None else answer

    def _create(self, match, headers, body, query):
        payload = json.loads(body)
        self.created.append(payload)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload['organization'] or 'user'}/{payload['name']}"
        url = f"{self.url}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
        if (repo_type, repo_id) in self.repos:
            return _error(409, "Conflict", "You already created this repo", extra={"url": url})
        self.repos[(repo_type, repo_id)] = {}
        if payload.get("private") or payload.get("visibility") == "private":
            self.private.add((repo_type, repo_id))
        self._new_commit(repo_type, repo_id, "main", {}, None, "initial commit")
        return _json(200, {"url": url, "name": repo_id})

    def _branch(self, match, headers, body, query):
        repo = self._repo(match)
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")
        branch = unquote(match["rev"])
        if branch.startswith("refs/"):  # the Hub's BadRequestError: "Invalid reference for a branch"
            return _error(400, "BadRequest", f"Invalid reference for a branch: {branch}")
        if branch in repo:
            return _error(409, "Conflict", "Branch already exists")
        repo[branch] = repo["main"]  # same head commit, same snapshot; commits replace the dict
        repo_type = match["type"][:-1]
        self.heads[(repo_type, match["repo"], branch)] = self.heads[(repo_type, match["repo"], "main")]
        return _json(200, {})

    def _refs(self, match, headers, body, query):
        repo_type, repo_id, repo = match["type"][:-1], match["repo"], self._repo(match)
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")

        def ref(name: str, full: str, oid: str) -> dict:
            return {"name": name, "ref": full, "targetCommit": oid}

        heads = {name: self.heads[(repo_type, repo_id, name)] for name in repo}
        refs = {"branches": [ref(n, f"refs/heads/{n}", oid) for n, oid in heads.items() if not n.startswith("refs/")],
                "converts": [],
                "tags": [ref(n, f"refs/tags/{n}", oid) for (t, r, n), oid in self.tags.items() if (t, r) == (repo_type, repo_id)]}
        if query.get("include_prs"):
            refs["pullRequests"] = [ref(n, n, oid) for n, oid in heads.items() if n.startswith("refs/pr/")]
        return _json(200, refs)

    def _info(self, match, headers, body, query):
        repo_type, repo_id, rev = match["type"][:-1], match["repo"], unquote(match["rev"] or "main")
        if self._repo(match) is None:
            return _error(404, "RepoNotFound", "Repository not found")
        oid = self._commit_of(repo_type, repo_id, rev)
        if oid is None:
            return _error(404, "RevisionNotFound", "Revision not found")
        files, blobs = self.snapshots[oid], query.get("blobs", ["false"])[0].lower() == "true"
        siblings = [{"rfilename": path, **({"size": len(files[path]), "blobId": _blob_oid(files[path])} if blobs else {})}
                    for path in sorted(files)]
        first = oid
        while self.parents.get(first):
            first = self.parents[first]
        info = {"_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24], "id": repo_id,
                "author": repo_id.split("/")[0], "sha": oid, "lastModified": self.dates[oid],
                "createdAt": self.dates[first], "private": (repo_type, repo_id) in self.private, "gated": False, "disabled": False, "downloads": 0,
                "likes": 0, "tags": [], "siblings": siblings, "usedStorage": sum(map(len, files.values()))}
        if "expand" in query:  # the Hub answers the properties asked for, and the ids
            info = {key: value for key, value in info.items() if key in ("_id", "id", *query["expand"])}
        return _json(200, info)

    def _revision(self, match) -> tuple[str | None, tuple | None]:
        """The commit the request's revision names, or the Hub's 404 answer for a missing repo or revision."""
        if self._repo(match) is None:
            return None, _error(404, "RepoNotFound", "Repository not found")
        oid = self._commit_of(match["type"][:-1], match["repo"], unquote(match["rev"]))
        if oid is None:
            return None, _error(404, "RevisionNotFound", "Revision not found")
        return oid, None

    def _tree(self, match, headers, body, query):
        oid, missing = self._revision(match)
        if missing:
            return missing
        files = self.snapshots[oid]
        folder = unquote(match["path"] or "").strip("/")
        prefix = folder + "/" if folder else ""
        below = sorted({p[len(prefix):] for p in files if p.startswith(prefix)})
        if folder and not below:
            return _error(404, "EntryNotFound", f"{folder} does not exist")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        paths = set()  # listed as directories, then files, each sorted
        for rest in below:
            parts = rest.split("/")
            depth = len(parts) if recursive else 1
            paths.update(prefix + "/".join(parts[:k]) for k in range(1, min(depth, len(parts)) + 1))
        folders = sorted(p for p in paths if p not in files)
        expand = query.get("expand", ["false"])[0].lower() == "true"
        entries = [self._entry(files, p, oid, expand) for p in folders + sorted(p for p in paths if p in files)]
        return 200, {"Content-Type": "application/json"}, json.dumps(entries).encode()

    def _paths_info(self, match, headers, body, query):
        oid, missing = self._revision(match)
        if missing:
            return missing
        files, form = self.snapshots[oid], parse_qs(body.decode())
        expand = form.get("expand", ["false"])[0].lower() == "true"
        wanted = [p.strip("/") for p in form.get("paths", [])]
        found = [p for p in wanted if p in files or any(f.startswith(p + "/") for f in files)]
        return _json(200, [self._entry(files, p, oid, expand) for p in found])

    def _entry(self, files: dict[str, bytes], path: str, oid: str, expand: bool) -> dict:
        """A tree / paths-info entry: a file (blob oid, size) or a directory (tree oid)."""
        if path in files:
            entry = {"type": "file", "oid": _blob_oid(files[path]), "size": len(files[path]), "path": path}
        else:
            below = sorted((p, _blob_oid(c)) for p, c in files.items() if p.startswith(path + "/"))
            entry = {"type": "directory", "oid": hashlib.sha1(json.dumps(below).encode()).hexdigest(), "size": 0,
                     "path": path}
        if expand:
            entry["lastCommit"] = self._last_commit(oid, path)
            if path in files:
                entry["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False, "virusNames": None},
                                               "pickleImportScan": None}
        return entry

    def _validate_yaml(self, match, headers, body, query):
        return _json(200, {"errors": [], "warnings": []})

    def _preupload(self, match, headers, body, query):
        if self._repo(match) is None:
            return _error(404, "RepoNotFound", "Repository not found")
        files = json.loads(body)["files"]
        modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
        return _json(200, {"files": modes})

    def _commit(self, match, headers, body, query):
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
        oid = self._new_commit(match["type"][:-1], match["repo"], rev, files, head, header.get("summary", ""))
        prefix = "" if match["type"] == "models" else f"{match['type']}/"
        return _json(200, {"commitUrl": f"{self.url}/{prefix}{match['repo']}/commit/{oid}", "commitOid": oid})

    def _resolve(self, match, headers, body, query):
        if self._repo(match) is None:
            return _error(404, "RepoNotFound", "Repository not found")
        files = self._snapshot(match)
        if files is None:
            return _error(404, "RevisionNotFound", "Revision not found")
        rev = unquote(match["rev"])
        commit = self._commit_of((match["type"] or "models")[:-1], match["repo"], rev) or rev
        content = files.get(unquote(match["path"]))
        if content is None:
            status, error_headers, payload = _error(404, "EntryNotFound", "Entry not found")
            return status, {**error_headers, "X-Repo-Commit": commit}, payload
        answer = {"ETag": f'"{_blob_oid(content)}"', "X-Repo-Commit": commit, "Accept-Ranges": "bytes",
                  "Content-Type": "application/octet-stream"}
        ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", headers.get("Range") or "")
        if ranged is None:
            return 200, answer, content
        self.ranges.append((match.string, headers["Range"]))
        first, last = ranged.groups()
        start = int(first) if first else max(len(content) - int(last), 0)  # "bytes=-n": the last n bytes
        end = min(int(last) if first and last else len(content) - 1, len(content) - 1)
        if start >= len(content):
            return 416, {**answer, "Content-Range": f"bytes */{len(content)}"}, b""
        return 206, {**answer, "Content-Range": f"bytes {start}-{end}/{len(content)}"}, content[start:end + 1]

    def _repo(self, match):
        repo_type = (match["type"] or "models")[:-1]
        return self.repos.get((repo_type, match["repo"]))

    def _snapshot(self, match) -> dict[str, bytes] | None:
        """The files at ``match["rev"]``: a branch, tag or commit oid of the repo (`None` when none)."""
        repo, rev = self._repo(match), unquote(match["rev"])
        if repo is None:
            return None
        oid = self._commit_of((match["type"] or "models")[:-1], match["repo"], rev)
        return repo[rev] if rev in repo else self.snapshots.get(oid)


def _route(method: str, path: str):
    path = urlsplit(path).path
    if method == "POST" and path == "/api/repos/create":
        return "create", None
    if method == "POST" and path == "/api/validate-yaml":
        return "validate_yaml", None
    if method == "POST" and (match := _API.fullmatch(path)):
        return match["kind"].replace("-", "_"), match
    if method == "GET" and (match := _REFS.fullmatch(path)):
        return "refs", match
    if method == "GET" and (match := _TREE.fullmatch(path)):
        return "tree", match
    if method == "GET" and (match := _INFO.fullmatch(path)):
        return "info", match
    if method in ("HEAD", "GET") and (match := _RESOLVE.fullmatch(path)):
        return "resolve", match
    return None, None


def _blob_oid(content: bytes) -> str:
    """The git blob oid of a file's content (the Hub's ``oid`` and ``ETag`` of a non-LFS file)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _json(status: int, payload: dict | list) -> tuple[int, dict, bytes]:
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
