"""A local stand-in for the Hugging Face Hub's file endpoint, for tests that must stay offline.

It serves ``HEAD`` and ``GET /{repo_id}/resolve/{revision}/{filename}`` the way the Hub does for a
plain (non-LFS, non-Xet) file: ``X-Repo-Commit``, ``ETag`` (the sha256 of the bytes served) and
``Content-Length``, or 404 with ``X-Error-Code: EntryNotFound``. That is what
``huggingface_hub.hf_hub_download`` needs (see ``get_hf_file_metadata`` and
``_get_metadata_or_catch_error`` in its ``file_download.py``). Point ``HF_ENDPOINT`` at :attr:`url`.
"""

from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

_RESOLVE = re.compile(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)")


class FakeHub:
    """Serve files on 127.0.0.1 at a free port from a background thread; use as a context manager.

    ``requests`` records ``(method, path)`` of every request, so a test can tell a cache hit from a
    download.
    """

    def __init__(self) -> None:
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, repo_id: str, revision: str, filename: str, data: bytes) -> None:
        self.files[(repo_id, revision, filename)] = data

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def _answer(self, *, send_body: bool) -> None:
            hub.requests.append((self.command, self.path))
            key = _file_key(self.path)
            data = None if key is None else hub.files.get(key)
            if data is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Error-Message", "Entry not found")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            _, revision, _ = key
            self.send_response(200)
            self.send_header("X-Repo-Commit", revision)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if send_body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            """Keep test output quiet; ``hub.requests`` is the log."""

    return Handler


def _file_key(path: str) -> tuple[str, str, str] | None:
    """``/owner/name/resolve/rev/dir/file?x`` -> ``("owner/name", "rev", "dir/file")``; None for other paths."""
    match = _RESOLVE.fullmatch(path.partition("?")[0])
    return None if match is None else (match["repo"], unquote(match["rev"]), unquote(match["file"]))
