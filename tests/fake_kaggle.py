"""A fake Kaggle API on loopback for driving the real ``kaggle`` CLI in tests.

The CLI (kaggle 2.2.5 / kagglesdk) talks JSON-over-POST to
``http://localhost/api/v1/<service>/<Method>`` when ``KAGGLE_API_ENVIRONMENT=LOCALHOST``;
with ``http_proxy=http://127.0.0.1:PORT`` every request, whatever its host, reaches this
server as a proxy request (absolute URL in the request line). The endpoints answered:

* ``datasets.DatasetApiService/GetDatasetStatus`` -- ``{"status": "READY"}`` for a
  known dataset, else 404 ``{"code": 404, "message": ...}`` (what the CLI reads as "not
  found": ``datasets status`` exits 1, ``datasets create`` goes on).
* ``blobs.BlobApiService/StartBlobUpload`` -- hands out a token and a ``createUrl`` that
  points back here (``/upload/<n>``); the CLI then ``PUT``s the file's bytes there.
* ``datasets.DatasetApiService/CreateDataset`` and ``.../CreateDatasetVersion`` --
  ``{"status": "ok", "url": ..., "ref": ...}`` or the configured error.
* ``kernels.KernelsApiService/SaveKernel`` -- ``{"ref", "url", "versionNumber"}`` or
  ``{"error": ...}`` with HTTP 200 (the CLI then prints "Kernel push error" and exits 0).

Every request is recorded (method, path, JSON body, uploaded bytes). An endpoint named
in ``hang`` (as ``endpoints()`` names it) reads the request and never answers, as a server
that accepted the connection and stalled; ``stop()`` lets those handlers go.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

API = "/api/v1/"


@dataclass
class Recorded:
    method: str
    path: str
    body: dict | None = None
    data: bytes = b""

    @property
    def endpoint(self) -> str:
        """``Service/Method`` for API calls (``datasets.DatasetApiService/CreateDataset``), else the path."""
        return self.path.removeprefix(API)

    @property
    def label(self) -> str:
        """The endpoint of an API call, ``PUT /upload`` for a file's bytes."""
        return self.endpoint if self.path.startswith(API) else f"{self.method} /upload"


@dataclass
class FakeKaggle:
    """Start with ``start()``; configure the answers through the attributes."""

    existing_datasets: set[str] = field(default_factory=set)  # "owner/slug" that GetDatasetStatus finds
    kernel_error: str | None = None  # SaveKernel answers {"error": kernel_error}
    kernel_invalid_dataset_sources: list[str] = field(default_factory=list)
    dataset_error_status: int | None = None  # CreateDataset/CreateDatasetVersion answer this HTTP status
    dataset_error: str | None = None  # ... or HTTP 200 with {"status": "error", "error": dataset_error}
    processed_status: str = "READY"  # what GetDatasetStatus answers for an uploaded dataset
    hang: set[str] = field(default_factory=set)  # endpoints (as endpoints() names them) that never answer
    requests: list[Recorded] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)  # blob token -> bytes PUT for it

    def __post_init__(self):
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._blobs: dict[str, dict] = {}  # upload id -> {"token", "name"}
        self._release = threading.Event()  # set by stop(): hung handlers return without answering
        self.uploaded_datasets: set[str] = set()

    # ---- lifecycle
    def start(self) -> FakeKaggle:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):  # quiet
                pass

            def _read_body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self, status: int, payload: dict | None = None) -> None:
                data = json.dumps(payload if payload is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                path = urlsplit(self.path).path
                raw = self._read_body()
                body = None
                if path.startswith(API):
                    try:
                        body = json.loads(raw or b"{}")
                    except ValueError:
                        body = None
                record = Recorded(self.command, path, body, raw if not path.startswith(API) else b"")
                with fake._lock:
                    fake.requests.append(record)
                if record.label in fake.hang:
                    fake._release.wait()
                    return
                status, payload = fake._respond(record)
                self._answer(status, payload)

            do_GET = do_POST = do_PUT = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake first"
        return self._server.server_address[1]

    def env(self) -> dict[str, str]:
        """Environment entries that send the CLI here."""
        proxy = f"http://127.0.0.1:{self.port}"
        return {"KAGGLE_API_ENVIRONMENT": "LOCALHOST", "http_proxy": proxy, "HTTP_PROXY": proxy}

    # ---- queries
    def calls(self, endpoint: str) -> list[Recorded]:
        """Recorded requests to one endpoint, e.g. ``kernels.KernelsApiService/SaveKernel``."""
        return [r for r in self.requests if r.endpoint == endpoint]

    def endpoints(self) -> list[str]:
        return [r.label for r in self.requests]

    # ---- answers
    def _respond(self, r: Recorded) -> tuple[int, dict]:
        body = r.body or {}
        if r.method == "PUT" and r.path.startswith("/upload/"):
            blob = self._blobs.get(r.path.rsplit("/", 1)[-1])
            if blob is None:
                return 404, {"code": 404, "message": "unknown upload"}
            self.uploads[blob["token"]] = r.data
            return 200, {}
        endpoint = r.endpoint
        if endpoint == "datasets.DatasetApiService/GetDatasetStatus":
            ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
            if ref in self.uploaded_datasets:
                return 200, {"status": self.processed_status}
            if ref in self.existing_datasets:
                return 200, {"status": "READY"}
            return 404, {"code": 404, "message": f"Dataset {ref} not found"}
        if endpoint == "blobs.BlobApiService/StartBlobUpload":
            with self._lock:
                n = str(len(self._blobs) + 1)
                token = f"blob-token-{n}"
                self._blobs[n] = {"token": token, "name": body.get("name")}
            return 200, {"token": token, "createUrl": f"http://127.0.0.1:{self.port}/upload/{n}"}
        if endpoint in ("datasets.DatasetApiService/CreateDataset", "datasets.DatasetApiService/CreateDatasetVersion"):
            if self.dataset_error_status is not None:
                code = self.dataset_error_status
                return code, {"code": code, "message": self.dataset_error or f"dataset rejected ({code})"}
            if self.dataset_error is not None:
                return 200, {"status": "error", "error": self.dataset_error}
            ref = f"{body.get('ownerSlug')}/{body.get('slug') or body.get('datasetSlug')}"
            self.existing_datasets.add(ref)
            self.uploaded_datasets.add(ref)
            return 200, {"status": "ok", "ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}"}
        if endpoint == "kernels.KernelsApiService/SaveKernel":
            if self.kernel_error is not None:
                return 200, {"error": self.kernel_error}
            ref = body.get("slug") or ""
            return 200, {
                "ref": ref,
                "url": f"https://www.kaggle.com/code/{ref}",
                "versionNumber": 1,
                "invalidDatasetSources": self.kernel_invalid_dataset_sources,
            }
        return 404, {"code": 404, "message": f"fake Kaggle does not answer {r.method} {r.path}"}
