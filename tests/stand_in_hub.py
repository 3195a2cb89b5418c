"""A stand-in for the Hugging Face Hub, serving one dataset file over real HTTP on 127.0.0.1.

It answers what `huggingface_hub`, `hf_xet` and `datasets` send for a dataset file: `HEAD` and `GET` (with
`Range`) on the `resolve` URL, the repository info API and the tree API, with the headers the real Hub
sends (`ETag`, `X-Linked-Etag`, `X-Linked-Size`, `X-Repo-Commit`, `Accept-Ranges`, `X-Error-Code`). The clients
are used as they are: point them at it with `HF_ENDPOINT`.

With `xet=True` it also plays Xet storage, after the public Xet protocol (huggingface.co/docs/xet): the
`resolve` answers announce the file's Xet hash and token route (`X-Xet-Hash`, `X-Xet-Refresh-Route`); the token
route (`/api/datasets/<repo>/xet-read-token/<revision>`) answers with the CAS URL, an access token and its
expiry in `X-Xet-Cas-Url`, `X-Xet-Access-Token`, `X-Xet-Token-Expiration`; the CAS API answers
`GET /v1/reconstructions/<file hash>` (with or without `Range`) with terms and fetch information, and `/v2/`
with 404, which sends a client back to v1 as the specification says; xorbs are served by byte range, each a
run of uncompressed chunks of XET_CHUNK_BYTES behind their 8-byte headers. The file and xorb hashes are made up
(the client checks neither: see the README), so no blake3 or content-defined chunking is needed.

Modes: "normal"; "gated" (no token or an unknown one: 401 GatedRepo); "forbidden" (a token that has not been
granted access: 403 GatedRepo); "not_found" (the file is missing: 404 EntryNotFound); "drop" (every `GET` of the
file stops after `drop_after` bytes of its body); "outage" (the connection breaks for good once `drop_after` bytes
of the file have been sent, counted over all `GET`s); "reset" (as "outage", but the connection is reset, as by a
router that drops it, instead of closed); "whole_file" (a `Range` request is answered 200 with the whole file, as
some proxies do); "bad_checksum" (the bytes served differ from the sha256 announced); "server_error" (every
request answers 400, which no client retries and nothing here expects); "bare_401" and "bare_403" (every request
answers so, without the Hub's `X-Error-Code`, as a proxy would).
Xet modes: "normal"; "outage" (xorb data stops for good after `xet_drop_after` bytes); "damaged" (the byte of the
file at `xet_damage_offset`, the middle by default, is flipped in the chunk that holds it, under the same
headers); "token_401" and "token_403" (the token route refuses, as the Hub does for a gated repository).

`bytes_sent` counts the bytes of file and xorb data sent in bodies, for the tests and bench/ to weigh a download;
`resolve_requests` counts the requests of the `resolve` URL, which the real Hub counts against a rate limit.

What makes it behave as a distant Hub does: `rate_limit` caps what each connection sends, in bytes per second, as
a real link would; `delay` adds that many seconds to every request; with `redirect=True`, `resolve` answers, as the
Hub does, 302 with the file's headers and a `Location` on another host (`localhost` for `127.0.0.1`): a storage URL
signed for `signed_url_seconds`, which serves the bytes (`Range` included) and refuses, as signed storage does, a
request that also carries an `Authorization` header (400), or that comes after the signature expired (403): here,
after `signed_url_requests` requests of one URL, if set, so that a test can have it expire at a known point.
`hold(starts, xorbs, after)` holds, until `released` is set, every request for bytes from one of `starts`, every
request for one of the xorbs numbered in `xorbs`, and, with `after`, all data once `after` bytes of it were sent
(counted in pieces of `SEND_PIECE_BYTES`): a Hub whose later bytes are slow to come, for as long as a test needs (a
download stopped at a known point, however busy the machine).
`refuse(seconds)` answers every `resolve` request for `seconds` from the first (with `ranges_only`, those with a `Range`
header: the reads of a mirror that serves the bytes itself) 429, as the Hub does past its rate limit, with
`Retry-After` and `RateLimit` headers that say how long is left (with `as_date`, as a proxy says it: `Retry-After`
alone, as an HTTP date): a client that asks again before then is refused again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

GOOD_TOKEN = "hf_granted_token"
XET_ACCESS_TOKEN = "xet_stand_in_access_token"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
XET_CHUNK_BYTES = 64 * 1024  # the specification's target chunk size; 128 KiB is its limit
XET_CHUNK_HEADER_BYTES = 8
SEND_PIECE_BYTES = 1 << 20


class StandInHub:
    def __init__(self, archive_path: os.PathLike, repo_id: str = "BAAI/Emotiontalk", filename: str = "Audio.tar",
                 xet: bool = False, chunks_per_xorb: int = 1024, rate_limit: float | None = None, delay: float = 0.0,
                 redirect: bool = False):
        self.archive_path, self.repo_id, self.filename = Path(archive_path), repo_id, filename
        self.size = self.archive_path.stat().st_size
        self._fd = os.open(self.archive_path, os.O_RDONLY)
        self.sha256 = _file_sha256(self._fd, self.size)
        self.xet, self.chunks_per_xorb, self.rate_limit = xet, chunks_per_xorb, rate_limit
        self.xet_hash = hashlib.sha256(f"xet file {self.sha256}".encode()).hexdigest()
        self.chunk_count = max(1, -(-self.size // XET_CHUNK_BYTES))
        self.xorb_hashes = [hashlib.sha256(f"xorb {index} of {self.xet_hash}".encode()).hexdigest()
                            for index in range(-(-self.chunk_count // chunks_per_xorb))]
        self.delay, self.redirect = delay, redirect
        self.signed_url_seconds = 3600.0
        self.signed_url_requests: int | None = None
        self._uses: dict[str, int] = {}
        self.refuse_seconds, self.refused_until = 0.0, 0.0
        self.refuse_ranges_only, self.retry_after_as_date, self.told_wait = False, False, None
        self.resolve_requests = 0
        self.mode = "normal"
        self.xet_mode = "normal"
        self.drop_after = self.xet_drop_after = 0
        self.xet_damage_offset = self.size // 2
        self.body_bytes_sent = self.xorb_bytes_sent = self.bytes_sent = 0
        self.requests: list[tuple[str, str, dict]] = []
        self.held_starts: set[int] = set()
        self.held_xorbs: set[int] = set()
        self.held_after: int | None = None
        self.released = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def content(self) -> bytes:
        return self.read(0, self.size)

    def refuse(self, seconds: float, ranges_only: bool = False, as_date: bool = False, told: int | None = None) -> None:
        """Answer `resolve` requests 429 for `seconds` from the first, as the Hub does past its rate limit; `told`: the
        wait it says, if not how long is left (a limit shared with other clients can outlast what it said)."""
        self.refuse_seconds, self.refused_until = seconds, 0.0
        self.refuse_ranges_only, self.retry_after_as_date, self.told_wait = ranges_only, as_date, told

    def hold(self, starts: set[int] = frozenset(), xorbs: set[int] = frozenset(), after: int | None = None) -> None:
        self.held_starts, self.held_xorbs, self.held_after = starts, xorbs, after
        self.released.clear()

    def __enter__(self) -> "StandInHub":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        os.close(self._fd)

    def read(self, start: int, end: int) -> bytes:
        """The bytes [start, end) of the file as served: damaged at byte 0 in "bad_checksum" mode."""
        data = os.pread(self._fd, end - start, start)
        if self.mode == "bad_checksum" and start == 0 and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    @property
    def storage_url(self) -> str:
        """The host the signed storage URLs name: the same server, reached by another name."""
        return f"http://localhost:{self._server.server_address[1]}"

    def ranges_requested(self) -> list[str]:
        """The `Range` of every GET of the file's bytes ("" for the whole file), from `resolve` or from storage."""
        return [headers.get("range", "") for method, path, headers in self.requests
                if method == "GET" and ("/resolve/" in path or path.startswith("/storage/"))]

    def signature(self, expires: str) -> str:
        return hashlib.sha256(f"{self.sha256} until {expires}".encode()).hexdigest()[:32]

    def xet_requests(self) -> list[str]:
        return [path for method, path, headers in self.requests
                if "xet-read-token" in path or path.startswith(("/v1/", "/v2/", "/reconstruction/", "/xorbs/"))]

    def chunk_length(self, chunk: int) -> int:
        return min(XET_CHUNK_BYTES, self.size - chunk * XET_CHUNK_BYTES)

    def file_segments(self, start: int, end: int) -> list:
        """Bytes [start, end) of the file as served, as a body's segments (see `_slice`)."""
        return [self.read(start, end)] if self.mode == "bad_checksum" else [(start, end - start)]

    def xorb_segments(self, xorb: int, first_chunk: int, end_chunk: int) -> list:
        """Chunks [first_chunk, end_chunk) of a xorb as it is stored: each an 8-byte header (version 0, stored
        size, compression 0 for none, raw size; sizes 3 bytes little-endian), then the chunk's bytes."""
        segments = []
        for chunk in range(xorb * self.chunks_per_xorb + first_chunk, xorb * self.chunks_per_xorb + end_chunk):
            length = self.chunk_length(chunk)
            segments.append(struct.pack("<B", 0) + length.to_bytes(3, "little") + struct.pack("<B", 0) + length.to_bytes(3, "little"))
            if self.xet_mode == "damaged" and chunk == self.xet_damage_offset // XET_CHUNK_BYTES:
                data = bytearray(self.read(chunk * XET_CHUNK_BYTES, chunk * XET_CHUNK_BYTES + length))
                data[self.xet_damage_offset % XET_CHUNK_BYTES] ^= 0x01
                segments.append(bytes(data))
            else:
                segments.append((chunk * XET_CHUNK_BYTES, length))
        return segments

    def reconstruction(self, first_byte: int, last_byte: int) -> dict:
        """The v1 reconstruction of bytes [first_byte, last_byte]: one term per xorb that holds them."""
        first_chunk, last_chunk = first_byte // XET_CHUNK_BYTES, last_byte // XET_CHUNK_BYTES
        terms, fetch_info = [], {}
        for xorb, xorb_hash in enumerate(self.xorb_hashes):
            xorb_first = xorb * self.chunks_per_xorb
            start = max(first_chunk, xorb_first) - xorb_first
            end = min(last_chunk + 1, xorb_first + self.chunks_per_xorb) - xorb_first
            if start >= end:
                continue
            unpacked = sum(self.chunk_length(xorb_first + chunk) for chunk in range(start, end))
            terms.append({"hash": xorb_hash, "unpacked_length": unpacked, "range": {"start": start, "end": end}})
            stride = XET_CHUNK_HEADER_BYTES + XET_CHUNK_BYTES
            first, last = start * stride, start * stride + (end - start) * XET_CHUNK_HEADER_BYTES + unpacked - 1
            fetch_info[xorb_hash] = [{
                "range": {"start": start, "end": end},
                # Signed for exactly this range, as the real transfer service's URLs are: no token goes with them.
                "url": f"{self.url}/xorbs/default/{xorb_hash}?X-Xet-Signed-Range=bytes%3D{first}-{last}",
                "url_range": {"start": first, "end": last},
            }]
        return {"offset_into_first_range": first_byte - first_chunk * XET_CHUNK_BYTES, "terms": terms, "fetch_info": fetch_info}


def _file_sha256(fd: int, size: int) -> str:
    digest = hashlib.sha256()
    for offset in range(0, size, 1 << 24):
        digest.update(os.pread(fd, 1 << 24, offset))
    return digest.hexdigest()


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """[start, end) of a `Range: bytes=a-b` header within `size` bytes; None without one."""
    if match := re.fullmatch(r"bytes=(\d+)-(\d*)", header):
        return int(match.group(1)), min(size, int(match.group(2) or size - 1) + 1)
    return None


def _slice(segments: list, skip: int, length: int) -> list:
    """Bytes [skip, skip + length) of a body made of segments: bytes, or (offset, length) of the file, which is
    sent from the page cache straight to the socket, so that the stand-in costs the client's machine as little
    CPU as a remote server would."""
    sliced = []
    for segment in segments:
        size = len(segment) if isinstance(segment, bytes) else segment[1]
        if skip >= size:
            skip -= size
            continue
        take = min(size - skip, length)
        if take <= 0:
            break
        sliced.append(segment[skip : skip + take] if isinstance(segment, bytes) else (segment[0] + skip, take))
        skip, length = 0, length - take
    return sliced


def _handler_for(hub: StandInHub):
    repo = re.escape(hub.repo_id)
    resolve_path = re.compile(rf"^/datasets/{repo}/resolve/([^/]+)/(.+)$")
    info_path = re.compile(rf"^/api/datasets/{repo}(?:/revision/([^/]+))?$")
    tree_path = re.compile(rf"^/api/datasets/{repo}/tree/([^/]+)/?$")
    token_path = re.compile(rf"^/api/datasets/{repo}/xet-read-token/([^/]+)$")
    # /v1/ and /v2/ as the specification has them; /reconstruction/ as hf_xet before 1.2 asks for v1.
    reconstruction_path = re.compile(r"^/(?:v([12])/reconstructions|reconstruction)/([0-9a-f]{64})$")
    xorb_path = re.compile(r"^/xorbs/default/([0-9a-f]{64})$")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # As servers of files do: a short body is not held back for the client's delayed acknowledgement.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connection_started, self.connection_bytes = time.monotonic(), 0

        def log_message(self, *args) -> None:
            """Quiet: the tests read `hub.requests` instead."""

        def do_HEAD(self) -> None:
            self._dispatch(send_body=False)

        def do_GET(self) -> None:
            self._dispatch(send_body=True)

        def _dispatch(self, send_body: bool) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            with hub._lock:
                hub.requests.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
                resolving = resolve_path.match(path) is not None
                hub.resolve_requests += resolving
                limitable = resolving and (not hub.refuse_ranges_only or "Range" in self.headers)
                if limitable and hub.refuse_seconds:
                    # From the first request it refuses (the client may take a while to start), to a whole second of
                    # the clock, as an HTTP date says it: a client that waits as told is not refused again.
                    hub.refused_until, hub.refuse_seconds = math.ceil(time.time() + hub.refuse_seconds), 0.0
                left = math.ceil(hub.refused_until - time.time())
                limited = limitable and left > 0
                left = hub.told_wait or left
            if hub.delay:
                time.sleep(hub.delay)
            if limited:
                if hub.retry_after_as_date:  # as a proxy says it, without the Hub's own headers
                    headers = {"Retry-After": formatdate(hub.refused_until, usegmt=True)}
                else:
                    headers = {"Retry-After": str(left), "RateLimit": f'"resolvers";r=0;t={left}',
                               "RateLimit-Policy": '"fixed window";"resolvers";q=3000;w=300'}
                self._json(429, {"error": "rate limited"}, headers=headers)
                return
            if path.startswith("/storage/"):
                self._storage(path, dict(parse_qsl(url.query)), send_body)
                return
            if hub.xet and path.startswith("/xorbs/"):
                self._xorb(path, unquote(url.query))
                return
            if hub.xet and path.startswith(("/v1/", "/v2/", "/reconstruction/")):
                self._cas(path)
                return
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
            elif hub.xet and self.command == "GET" and (match := token_path.match(path)):
                self._xet_token(match.group(1))
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
            if hub.mode in ("bare_401", "bare_403"):  # as a proxy, or a mirror behind HF_ENDPOINT, answers
                self._error(int(hub.mode[-3:]), None, "Unauthorized" if hub.mode == "bare_401" else "Forbidden")
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
            start, end = (0, hub.size) if hub.mode == "whole_file" else _byte_range(self.headers.get("Range", ""), hub.size) or (0, hub.size)
            if start >= hub.size:
                self._error(416, None, "Requested range not satisfiable")
                return
            if hub.redirect:
                expires = f"{time.time() + hub.signed_url_seconds:.6f}"  # each URL its own, as each signature is
                self.send_response(302)
                self._file_headers(revision)
                self.send_header("Location", f"{hub.storage_url}/storage/{hub.sha256}?Expires={expires}&Signature={hub.signature(expires)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._file(revision, start, end, send_body)

        def _storage(self, path: str, query: dict, send_body: bool) -> None:
            """The signed storage URL that `resolve` redirects to, as the Hub's storage answers it."""
            if path != f"/storage/{hub.sha256}" or query.get("Signature") != hub.signature(query.get("Expires", "")):
                self._error(403, None, "SignatureDoesNotMatch")
            elif self.headers.get("Authorization"):
                self._error(400, None, "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                                       "Signature query string parameter or the Authorization header should be specified")
            elif float(query["Expires"]) < time.time() or not self._another_use(query["Signature"]):
                self._error(403, None, "Request has expired")
            else:
                start, end = (0, hub.size) if hub.mode == "whole_file" else _byte_range(self.headers.get("Range", ""), hub.size) or (0, hub.size)
                if start >= hub.size:
                    self._error(416, None, "Requested range not satisfiable")
                else:
                    self._file(None, start, end, send_body)

        def _another_use(self, signature: str) -> bool:
            with hub._lock:
                hub._uses[signature] = hub._uses.get(signature, 0) + 1
                return hub.signed_url_requests is None or hub._uses[signature] <= hub.signed_url_requests

        def _file_headers(self, revision: str | None) -> None:
            """The file's own headers; those of the Hub with the `revision` it was asked for, from `resolve`."""
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{hub.sha256}"')
            if revision is None:
                return
            self.send_header("X-Linked-Etag", f'"{hub.sha256}"')
            self.send_header("X-Linked-Size", str(hub.size))
            self.send_header("X-Repo-Commit", COMMIT)
            if hub.xet:
                self.send_header("X-Xet-Hash", hub.xet_hash)
                self.send_header("X-Xet-Refresh-Route", f"{hub.url}/api/datasets/{hub.repo_id}/xet-read-token/{revision}")

        def _file(self, revision: str | None, start: int, end: int, send_body: bool) -> None:
            """Bytes [start, end) of the file, with its headers, 206 for a `Range` request (but in "whole_file" mode)."""
            status = 206 if self.headers.get("Range") and hub.mode != "whole_file" else 200
            if start in hub.held_starts and self.headers.get("Range"):
                hub.released.wait()
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start))
            self._file_headers(revision)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{hub.size}")
            self.end_headers()
            if not send_body:
                return
            length = end - start
            with hub._lock:
                if hub.mode in ("drop", "outage", "reset"):
                    length = min(length, max(0, hub.drop_after - (hub.body_bytes_sent if hub.mode != "drop" else 0)))
                hub.body_bytes_sent += length
            self._send(_slice(hub.file_segments(start, end), 0, length))
            if length < end - start:
                self._cut()

        def _send(self, segments: list) -> None:
            """Send a body's segments, no faster than `rate_limit` bytes per second over this connection's life."""
            for segment in segments:
                if isinstance(segment, bytes):
                    self.connection.sendall(segment, socket.MSG_MORE)  # a chunk's header goes out with its data
                    self._pace(len(segment))
                    continue
                offset, length = segment
                for piece in range(offset, offset + length, SEND_PIECE_BYTES):
                    count, sent = min(offset + length, piece + SEND_PIECE_BYTES) - piece, 0
                    while sent < count:
                        sent += os.sendfile(self.connection.fileno(), hub._fd, piece + sent, count - sent)
                    self._pace(count)

        def _pace(self, sent: int) -> None:
            self.connection_bytes += sent
            with hub._lock:
                hub.bytes_sent += sent
            if hub.held_after is not None and hub.bytes_sent >= hub.held_after:
                hub.released.wait()
            if hub.rate_limit:
                ahead = self.connection_bytes / hub.rate_limit - (time.monotonic() - self.connection_started)
                if ahead > 0:
                    time.sleep(ahead)

        def _cut(self) -> None:
            self.wfile.flush()
            if hub.mode == "reset":  # no linger: closing sends RST, not FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

        def _xet_token(self, revision: str) -> None:
            if not self._known_revision(revision):
                return
            if hub.xet_mode in ("token_401", "token_403"):
                status = int(hub.xet_mode[-3:])
                self._error(status, None, "Access to this resource is restricted" if status == 403 else "Invalid credentials")
                return
            expiry = int(time.time()) + 3600
            self._json(200, {"accessToken": XET_ACCESS_TOKEN, "exp": expiry, "casUrl": hub.url}, headers={
                "X-Xet-Cas-Url": hub.url, "X-Xet-Access-Token": XET_ACCESS_TOKEN, "X-Xet-Token-Expiration": str(expiry),
            })

        def _cas(self, path: str) -> None:
            if self.headers.get("Authorization") != f"Bearer {XET_ACCESS_TOKEN}":
                self._error(401, None, "missing or invalid Xet access token")
            elif (match := reconstruction_path.match(path)) and match.group(1) != "2" and match.group(2) == hub.xet_hash:
                start, end = _byte_range(self.headers.get("Range", ""), hub.size) or (0, hub.size)
                if start >= hub.size:
                    self._error(416, None, "Requested range not satisfiable")
                else:
                    self._json(200, hub.reconstruction(start, end - 1))
            else:
                self._error(404, None, "not found")

        def _xorb(self, path: str, query: str) -> None:
            match = xorb_path.match(path)
            if not match or match.group(1) not in hub.xorb_hashes:
                self._error(404, None, "not found")
                return
            if query != f"X-Xet-Signed-Range={self.headers.get('Range')}":
                self._error(403, None, "the Range header is not the signed range")
                return
            xorb = hub.xorb_hashes.index(match.group(1))
            if xorb in hub.held_xorbs:
                hub.released.wait()
            stride = XET_CHUNK_HEADER_BYTES + XET_CHUNK_BYTES
            chunks = min(hub.chunks_per_xorb, hub.chunk_count - xorb * hub.chunks_per_xorb)
            xorb_size = chunks * XET_CHUNK_HEADER_BYTES + sum(
                hub.chunk_length(xorb * hub.chunks_per_xorb + chunk) for chunk in range(chunks))
            start, end = _byte_range(self.headers.get("Range", ""), xorb_size) or (0, xorb_size)
            first_chunk = start // stride
            segments = _slice(hub.xorb_segments(xorb, first_chunk, -(-end // stride)), start - first_chunk * stride, end - start)
            self.send_response(206)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start))
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{xorb_size}")
            self.end_headers()
            length = end - start
            if hub.xet_mode == "outage":
                with hub._lock:
                    length = min(length, max(0, hub.xet_drop_after - hub.xorb_bytes_sent))
                    hub.xorb_bytes_sent += length
            self._send(_slice(segments, 0, length))
            if length < end - start:
                self._cut()

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
                entries.append({
                    "type": "file", "path": hub.filename, "size": hub.size, "oid": hashlib.sha1(hub.sha256.encode()).hexdigest(),
                    "lfs": {"oid": hub.sha256, "size": hub.size, "pointerSize": 134},
                    **({"xetHash": hub.xet_hash} if hub.xet else {}),
                })
            self._json(200, entries)

        def _json(self, status: int, payload, error_code: str | None = None, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            if error_code:
                self.send_header("X-Error-Code", error_code)
                self.send_header("X-Error-Message", payload["error"])
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _error(self, status: int, error_code: str | None, message: str) -> None:
            self._json(status, {"error": message}, error_code)

    return Handler
