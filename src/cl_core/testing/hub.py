"""A minimal Hugging Face Hub on 127.0.0.1 for offline tests of pushing and pulling weights.

:class:`FakeHub` is a stdlib ``http.server`` in a background thread that speaks the part of the Hub API the
``huggingface_hub`` client (2.x) calls for ``create_repo``, ``create_branch``, ``create_commit`` /
``upload_folder`` (preupload answered with ``uploadMode: "regular"``, so file contents travel inline in the
NDJSON commit and no LFS or Xet storage is involved), ``repo_info``, ``list_repo_tree`` and
``hf_hub_download`` / ``snapshot_download`` (``HEAD``/``GET .../resolve/<revision>/<path>``). Repositories
live in memory; commits are content-addressed and branches point at them. Errors carry the headers the
client maps to its exception classes (``X-Error-Code: RepoNotFound`` / ``RevisionNotFound`` /
``EntryNotFound``).

Example::

    with FakeHub(tokens={"hf_writer": "me"}) as hub:
        HfApi(endpoint=hub.endpoint, token="hf_writer").create_repo("me/tiny")

In a pytest test, :func:`serve_fake_hub` also points the client at it and gives it an empty cache::

    def test_round_trip(monkeypatch, tmp_path):
        with serve_fake_hub(monkeypatch, tmp_path / "hf-home", tokens={"hf_writer": "me"}) as hub:
            push_to_hub(run_dir, "me/tiny", token="hf_writer")
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from attrs import define, field

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def blob_oid(content: bytes) -> str:
    """Git blob id of ``content`` (what the Hub reports as a regular file's ``oid`` and ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@define
class FakeRepo:
    """One repository: commits (id -> files) and branches (name -> commit id)."""

    repo_id: str
    private: bool = False
    commits: dict[str, dict[str, bytes]] = field(factory=dict)
    branches: dict[str, str] = field(factory=dict)
    messages: dict[str, str] = field(factory=dict)

    def commit(self, parent: str | None, files: dict[str, bytes], message: str) -> str:
        """Store a commit; returns its 40-hex id."""
        digest = hashlib.sha1(json.dumps([parent, message, len(self.commits),
                                          sorted((p, blob_oid(c)) for p, c in files.items())]).encode())
        oid = digest.hexdigest()
        self.commits[oid] = dict(files)
        self.messages[oid] = message
        return oid

    def resolve(self, revision: str) -> str | None:
        """Commit id of a branch name or a (full) commit id; None if neither."""
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.commits else None


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: Mapping[str, str] = {},
                 extra: Mapping[str, Any] = {}):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, dict(headers)
        self.extra = dict(extra)


class FakeHub:
    """The server. Use as a context manager, or call :meth:`start` and :meth:`stop`.

    Args:
        tokens: token -> user name. Writes need one of them (``Authorization: Bearer <token>``); private
            repositories are readable only with one. An unknown token is refused with HTTP 401.
        host: interface to bind; keep the loopback default.
    """

    def __init__(self, *, tokens: Mapping[str, str] | None = None, host: str = "127.0.0.1") -> None:
        self.tokens = dict(tokens if tokens is not None else {"hf_test_token": "tester"})
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), _handler_class(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>`` (pass it as ``HF_ENDPOINT`` or ``endpoint=``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def start(self) -> FakeHub:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of ``repo_id`` at ``revision`` (for assertions)."""
        repo = self.repos[repo_id]
        oid = repo.resolve(revision)
        if oid is None:
            raise KeyError(revision)
        return dict(repo.commits[oid])

    # -- request handling (called from server threads) ---------------------------------------------
    def _user(self, headers: Any) -> str | None:
        auth = headers.get("Authorization", "")  # an email.message.Message: case-insensitive
        if not auth:
            return None
        token = auth.removeprefix("Bearer ").strip()
        if token not in self.tokens:
            raise _HubError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def _repo(self, repo_id: str, user: str | None) -> FakeRepo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and user is None):
            raise _HubError(404 if repo is None else 401, "Repository not found", "RepoNotFound")
        return repo

    def _revision(self, repo: FakeRepo, revision: str) -> str:
        oid = repo.resolve(revision)
        if oid is None:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return oid

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: Any,
               body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests.append((method, path))
            user = self._user(headers)
            parts = [unquote(p) for p in path.strip("/").split("/")]
            if parts[:1] == ["api"]:
                return self._api(method, parts[1:], query, user, body)
            if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
                return self._resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]), user, method)
            raise _HubError(404, f"no route for {method} {path}")

    def _api(self, method: str, parts: list[str], query: dict[str, list[str]], user: str | None,
             body: bytes) -> tuple[int, dict[str, str], bytes]:
        if method == "POST" and parts == ["repos", "create"]:
            return self._create(json.loads(body or b"{}"), user)
        if method == "POST" and parts == ["validate-yaml"]:
            return _json({"errors": [], "warnings": []})
        if len(parts) < 3 or parts[0] != "models":
            raise _HubError(404, f"no route for /api/{'/'.join(parts)}")
        repo_id, rest = "/".join(parts[1:3]), parts[3:]
        if method == "POST" and rest[:1] in (["preupload"], ["commit"], ["branch"]) and user is None:
            raise _HubError(401, "You must be authenticated to write")
        repo = self._repo(repo_id, user)
        if method == "GET" and (not rest or rest[0] == "revision"):
            oid = self._revision(repo, rest[1] if len(rest) > 1 else "main")
            files = repo.commits[oid]
            return _json({"id": repo_id, "modelId": repo_id, "sha": oid, "private": repo.private,
                          "siblings": [{"rfilename": p} for p in sorted(files)], "tags": [], "downloads": 0,
                          "likes": 0, "library_name": "cl"})
        if method == "GET" and rest[:1] == ["tree"]:
            oid = self._revision(repo, rest[1])
            prefix = "/".join(rest[2:])
            files = repo.commits[oid]
            entries = [{"type": "file", "oid": blob_oid(c), "size": len(c), "path": p}
                       for p, c in sorted(files.items()) if not prefix or p.startswith(prefix + "/")]
            return _json(entries)
        if method == "POST" and rest[:1] == ["preupload"]:
            oid = self._revision(repo, rest[1])
            current = repo.commits[oid]
            files = json.loads(body)["files"]
            return _json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                     "oid": blob_oid(current[f["path"]]) if f["path"] in current else None}
                                    for f in files]})
        if method == "POST" and rest[:1] == ["commit"]:
            return self._commit(repo, rest[1], body)
        if method == "POST" and rest[:1] == ["branch"]:
            branch = "/".join(rest[1:])
            if branch in repo.branches:
                raise _HubError(409, f"Reference already exists: {branch}")
            start = json.loads(body or b"{}").get("startingPoint") or "main"
            repo.branches[branch] = self._revision(repo, start)
            return _json({})
        raise _HubError(404, f"no route for {method} /api/{'/'.join(parts)}")

    def _create(self, payload: dict[str, Any], user: str | None) -> tuple[int, dict[str, str], bytes]:
        if user is None:
            raise _HubError(401, "You must be authenticated to create a repository")
        repo_id = f"{payload.get('organization') or user}/{payload['name']}"
        url = f"{self.endpoint}/{repo_id}"
        if repo_id in self.repos:
            raise _HubError(409, "You already created this model repo", extra={"url": url})
        repo = FakeRepo(repo_id, private=bool(payload.get("private")) or payload.get("visibility") == "private")
        repo.branches["main"] = repo.commit(None, {".gitattributes": GITATTRIBUTES}, "initial commit")
        self.repos[repo_id] = repo
        return _json({"url": url, "name": repo_id})

    def _commit(self, repo: FakeRepo, revision: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if revision not in repo.branches:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        parent = repo.branches[revision]
        files = dict(repo.commits[parent])
        summary = ""
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value.get("summary", "")
                if value.get("parentCommit") and value["parentCommit"] != parent:
                    raise _HubError(412, "parent commit is not the head of the branch")
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                files = {p: c for p, c in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                raise _HubError(400, f"unsupported commit operation {key!r} (this fake hub has no LFS)")
        oid = repo.commit(parent, files, summary)
        repo.branches[revision] = oid
        return _json({"commitUrl": f"{self.endpoint}/{repo.repo_id}/commit/{oid}", "commitOid": oid,
                      "success": True, "pullRequestUrl": None})

    def _resolve(self, repo_id: str, revision: str, path: str, user: str | None,
                 method: str) -> tuple[int, dict[str, str], bytes]:
        repo = self._repo(repo_id, user)
        oid = self._revision(repo, revision)
        files = repo.commits[oid]
        if path not in files:
            raise _HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": oid})
        content = files[path]
        headers = {"X-Repo-Commit": oid, "ETag": f'"{blob_oid(content)}"', "Content-Type": "application/octet-stream"}
        return 200, headers, content


@contextmanager
def serve_fake_hub(monkeypatch: Any, home: str | Path, *, tokens: Mapping[str, str] | None = None) -> Iterator[FakeHub]:
    """Run a :class:`FakeHub` for one test with the ``huggingface_hub`` client pointed at it.

    Sets ``HF_ENDPOINT`` to the server, allows the network (a test suite usually sets ``HF_HUB_OFFLINE``),
    makes ``home`` the empty ``HF_HOME`` (so every pull starts from an empty cache) and hides any token of the
    environment or of a saved login, so only the tokens passed explicitly count.

    Args:
        monkeypatch: pytest's ``monkeypatch`` fixture; it undoes every change after the test.
        home: folder for ``HF_HOME`` (need not exist), e.g. ``tmp_path / "hf-home"``.
        tokens: as :class:`FakeHub`'s.
    """
    from huggingface_hub import constants

    home = Path(home)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read by huggingface_hub at import time
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))  # no saved login
    with FakeHub(tokens=tokens) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        yield hub


def _json(data: Any, status: int = 200) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(data).encode()


def _handler_class(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            body = self._body()
            try:
                status, headers, payload = hub.handle(method, url.path, parse_qs(url.query),
                                                      self.headers, body)
            except _HubError as exc:
                status, headers, payload = _json({"error": exc.message, **exc.extra}, exc.status)
                headers.update(exc.headers)
                headers["X-Error-Message"] = exc.message
                if exc.code:
                    headers["X-Error-Code"] = exc.code
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(payload)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_HEAD(self) -> None:
            self._serve("HEAD")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

    return Handler
