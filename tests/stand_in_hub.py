"""A stand-in for the Hugging Face Hub, serving one dataset file over real HTTP on 127.0.0.1.

It answers what the pinned `huggingface_hub` and `datasets` send for a dataset file: `HEAD` and `GET` (with
`Range`) on the `resolve` URL, the repository info API and the tree API, with the headers the real Hub
sends (`ETag`, `X-Linked-Etag`, `X-Linked-Size`, `X-Repo-Commit`, `Accept-Ranges`, `X-Error-Code`). The clients
are used as they are: point them at it with `HF_ENDPOINT`.

Modes: "normal"; "gated" (no token or an unknown one: 401 GatedRepo); "forbidden" (a token that has not been
granted access: 403 GatedRepo); "not_found" (the file is missing: 404 EntryNotFound); "drop" (every `GET` of the
file stops after `drop_after` bytes of its body); "outage" (the connection breaks for good once `drop_after` bytes
of the file have been sent, counted over all `GET`s); "bad_checksum" (the bytes served differ from the sha256
announced); "server_error" (every request answers 400, which no client retries and nothing here expects).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

GOOD_TOKEN = "hf_granted_token"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class StandInHub:
    def __init__(self, content: bytes, repo_id: str = "BAAI/Emotiontalk", filename: str = "Audio.tar"):
        self.content, self.repo_id, self.filename = content, repo_id, filename
        self.sha256 = hashlib.sha256(content).hexdigest()
        self.mode = "normal"
        self.drop_after = 0
        self.body_bytes_sent = 0
        self.requests: list[tuple[str, str, dict]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "StandInHub":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()

    def served_content(self) -> bytes:
        if self.mode == "bad_checksum":
            return bytes([self.content[0] ^ 0xFF]) + self.content[1:]
        return self.content

    def ranges_requested(self) -> list[str]:
        return [headers.get("range", "") for method, path, headers in self.requests if method == "GET" and "/resolve/" in path]


def _handler_for(hub: StandInHub):
    resolve_path = re.compile(rf"^/datasets/{re.escape(hub.repo_id)}/resolve/([^/]+)/(.+)$")
    info_path = re.compile(rf"^/api/datasets/{re.escape(hub.repo_id)}(?:/revision/([^/]+))?$")
    tree_path = re.compile(rf"^/api/datasets/{re.escape(hub.repo_id)}/tree/([^/]+)/?$")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            """Quiet: the tests read `hub.requests` instead."""

        def do_HEAD(self) -> None:
            self._dispatch(send_body=False)

        def do_GET(self) -> None:
            self._dispatch(send_body=True)

        def _dispatch(self, send_body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
            if not self._authorized():
                return
            if hub.mode == "server_error":
                self._error(400, None, "The stand-in Hub was asked to fail")
                return
            if match := resolve_path.match(path):
                self._resolve(*match.groups(), send_body=send_body)
            elif self.command == "GET" and (match := info_path.match(path)):
                self._repo_info(match.group(1) or "main")
            elif self.command == "GET" and (match := tree_path.match(path)):
                self._tree(match.group(1))
            else:
                self._error(404, "RepoNotFound", "Repository not found")

        def _authorized(self) -> bool:
            token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if hub.mode == "gated" and token != GOOD_TOKEN:
                self._error(401, "GatedRepo", f"Access to dataset {hub.repo_id} is restricted. You must have access to it and be authenticated to access it. Please log in.")
                return False
            if hub.mode == "forbidden":
                self._error(403, "GatedRepo", f"Access to dataset {hub.repo_id} is restricted and you are not in the authorized list.")
                return False
            return True

        def _known_revision(self, revision: str) -> bool:
            if revision in ("main", COMMIT):
                return True
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return False

        def _resolve(self, revision: str, filename: str, send_body: bool) -> None:
            if not self._known_revision(revision):
                return
            if filename != hub.filename or hub.mode == "not_found":
                self._error(404, "EntryNotFound", f"{filename} does not exist on \"{revision}\"")
                return
            content = hub.served_content()
            start, end = 0, len(content)
            status = 200
            if match := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "")):
                start, end = int(match.group(1)), min(len(content), int(match.group(2) or len(content) - 1) + 1)
                if start >= len(content):
                    self._error(416, None, "Requested range not satisfiable")
                    return
                status = 206
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{hub.sha256}"')
            self.send_header("X-Linked-Etag", f'"{hub.sha256}"')
            self.send_header("X-Linked-Size", str(len(hub.content)))
            self.send_header("X-Repo-Commit", COMMIT)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(content)}")
            self.end_headers()
            if not send_body:
                return
            if hub.mode in ("drop", "outage"):
                budget = hub.drop_after - (hub.body_bytes_sent if hub.mode == "outage" else 0)
                self._send_body(content[start : start + max(0, budget)])
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self._send_body(content[start:end])

        def _send_body(self, body: bytes) -> None:
            self.wfile.write(body)
            self.wfile.flush()
            hub.body_bytes_sent += len(body)

        def _repo_info(self, revision: str) -> None:
            if self._known_revision(revision):
                self._json(200, {
                    "_id": "stand-in", "id": hub.repo_id, "author": hub.repo_id.split("/")[0], "sha": COMMIT,
                    "private": False, "gated": "manual", "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                    "lastModified": "2025-05-29T00:00:00.000Z", "siblings": [{"rfilename": hub.filename}], "cardData": {},
                })

        def _tree(self, revision: str) -> None:
            if not self._known_revision(revision):
                return
            entries = []
            if hub.mode != "not_found":
                size = len(hub.content)
                entries.append({
                    "type": "file", "path": hub.filename, "size": size, "oid": hashlib.sha1(hub.content).hexdigest(),
                    "lfs": {"oid": hub.sha256, "size": size, "pointerSize": 134},
                })
            self._json(200, entries)

        def _json(self, status: int, payload, error_code: str | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            if error_code:
                self.send_header("X-Error-Code", error_code)
                self.send_header("X-Error-Message", payload["error"])
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _error(self, status: int, error_code: str | None, message: str) -> None:
            self._json(status, {"error": message}, error_code)

    return Handler
