"""A fake Hugging Face Hub on localhost, enough for ``huggingface_hub`` to list a repository's files and download
them (HEAD for metadata, GET with ``Range`` for resuming). ``cut_after`` makes the server drop the connection part
way through a file, as a lost network does."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

COMMIT = "c0ffee" + "0" * 34


class FakeHub:
    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.cut_after: int | None = None  # bytes of a GET body after which the connection is dropped
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Range header)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _file(self):
                parts = unquote(urlparse(self.path).path).lstrip("/").split("/")
                # /{owner}/{name}/resolve/{revision}/{path…}
                if len(parts) < 5 or parts[2] != "resolve":
                    return None, None
                files = hub.repos.get("/".join(parts[:2]))
                return (files or {}).get("/".join(parts[4:])), "/".join(parts[4:])

            def _send(self, code: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")  # no keep-alive thread outlives the test
                self.close_connection = True
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_HEAD(self):  # noqa: N802
                self._get(head=True)

            def do_GET(self):  # noqa: N802
                self._get(head=False)

            def _get(self, head: bool):
                hub.requests.append((self.command, self.path, self.headers.get("Range", "")))
                url = urlparse(self.path).path
                if url.startswith("/api/models/"):
                    repo = "/".join(url[len("/api/models/"):].split("/")[:2])
                    files = hub.repos.get(repo)
                    if files is None:
                        return self._send(404, b'{"error":"Repository not found"}',
                                          {"X-Error-Code": "RepoNotFound", "Content-Type": "application/json"})
                    info = {"id": repo, "sha": COMMIT, "siblings": [
                        {"rfilename": name, "size": len(data)} for name, data in sorted(files.items())]}
                    return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)
                data, name = self._file()
                if data is None:
                    return self._send(404, b"", {"X-Error-Code": "EntryNotFound"}, head)
                meta = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                        "Accept-Ranges": "bytes"}
                start = 0
                if self.headers.get("Range", "").startswith("bytes="):
                    start = int(self.headers["Range"][6:].split("-")[0])
                body = data[start:]
                if head:
                    return self._send(200, data, meta, head=True)
                code = 206 if start else 200
                if start:
                    meta["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                cut = hub.cut_after
                if cut is None or cut >= len(body):
                    return self._send(code, body, meta)
                self.send_response(code)
                for k, v in meta.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-hub", daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
        for thread in threading.enumerate():  # request threads finish once their connection is closed
            if thread.name.endswith("(process_request_thread)"):
                thread.join(5)


@contextlib.contextmanager
def serving(monkeypatch, cache, repos: dict[str, dict[str, bytes]]):
    """A :class:`FakeHub` with ``huggingface_hub`` pointed at it and at an empty cache folder ``cache`` (the test
    suite runs offline; this Hub is localhost)."""
    import huggingface_hub.constants as constants

    with FakeHub(repos) as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield server


def repo_of(folder) -> dict[str, bytes]:
    """Every file under ``folder`` as a repository's files."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
