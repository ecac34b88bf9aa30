"""A small REST client for a U-Net served by TensorFlow Serving.

Talks to TF Serving's REST API (``/v1/models/<name>[/versions/N]:predict``, model status and
``/metadata``) with the standard library only, so it works wherever keras-unet is installed and
does not import TensorFlow.

* images go through the export's ``predict_png`` signature: each image is sent as an encoded PNG,
  ``{"signature_name": "predict_png", "instances": [{"b64": "..."}]}``, and the mask comes back as
  a PNG in ``mask_png_bytes`` (TF Serving base64-encodes outputs whose name ends in ``_bytes``);
* 503 (model loading) and 429 (overloaded) are retried with exponential back-off within the
  ``timeout``, which is the deadline of the whole call, retries included; a refused connection (no
  server on that port) fails at once; other errors raise :class:`ServingError` carrying TF
  Serving's ``{"error": ...}`` message and the HTTP status.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["ServingClient", "ServingError", "describe_status", "graph_error"]

RETRY_STATUSES = (429, 503)


class ServingError(ValueError):
    """A request to TF Serving failed; ``status`` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class ServingClient:
    """Client for one model on a TF Serving REST endpoint.

    Args:
        server: base URL, e.g. ``http://localhost:8501``.
        model: the model name (TF Serving's MODEL_NAME).
        version: a version number, or None for the latest available one.
        timeout: seconds for a whole call, retries included.
        retries: extra attempts after a 503/429 answer, while time is left.
        backoff: seconds before the first retry; doubled for each further one.
        sleep: how to wait (tests pass a fake).
    """

    server: str
    model: str
    version: int | None = None
    timeout: float = 60.0
    retries: int = 4
    backoff: float = 0.5
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlparse(self.server)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"--server must be a URL like http://localhost:8501, got {self.server!r}"
            )
        if not self.model or "/" in self.model or ":" in self.model:
            raise ValueError(f"--model must be a model name without '/' or ':', got {self.model!r}")
        if self.version is not None and (not isinstance(self.version, int) or self.version < 1):
            raise ValueError(f"--version must be a positive integer, got {self.version!r}")
        self.server = self.server.rstrip("/")

    # -- URLs ------------------------------------------------------------------------------

    @property
    def model_url(self) -> str:
        url = f"{self.server}/v1/models/{urllib.parse.quote(self.model, safe='')}"
        return url + (f"/versions/{self.version}" if self.version is not None else "")

    # -- HTTP ------------------------------------------------------------------------------

    def _request(self, url: str, body: dict | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        attempt = 0
        deadline = time.monotonic() + self.timeout
        while True:
            request = urllib.request.Request(
                url, data=data, method="GET" if body is None else "POST",
                headers={"Content-Type": "application/json"},
            )
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                with urllib.request.urlopen(request, timeout=left) as response:
                    return json.loads(response.read().decode())
            except urllib.error.HTTPError as exc:
                status, text = exc.code, exc.read().decode(errors="replace")
                wait = self.backoff * 2**attempt
                if (status in RETRY_STATUSES and attempt < self.retries
                        and time.monotonic() + wait < deadline):
                    self.sleep(wait)
                    attempt += 1
                    continue
                raise ServingError(_error_line(status, text, url), status) from None
            except urllib.error.URLError as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, (TimeoutError, socket.timeout)):
                    raise ServingError(f"TF Serving at {self.server} did not answer within "
                                       f"{self.timeout:g} s") from None
                raise ServingError(
                    f"cannot reach TF Serving at {self.server}: {reason}; is the server running "
                    f"and is --server right?"
                ) from None
            except (ConnectionError, http.client.HTTPException) as exc:
                raise ServingError(
                    f"TF Serving at {self.server} dropped the connection ({type(exc).__name__}); "
                    "is --server the REST port (8501)?"
                ) from None
            except TimeoutError:
                raise ServingError(
                    f"TF Serving at {self.server} did not answer within {self.timeout:g} s"
                ) from None
            except json.JSONDecodeError:
                raise ServingError(f"{url} did not answer with JSON; is it TF Serving's REST port?") from None

    # -- API -------------------------------------------------------------------------------

    def status(self) -> dict:
        """``GET /v1/models/<name>[/versions/N]``: the versions and their states."""
        return self._request(self.model_url)

    def metadata(self) -> dict:
        """``GET .../metadata``: the signatures with their inputs and outputs."""
        return self._request(self.model_url + "/metadata")

    def predict(self, body: dict) -> dict:
        """``POST ...:predict`` with a request body as TF Serving's REST API defines it."""
        return self._request(self.model_url + ":predict", body)

    def predict_png(self, images: list[bytes]) -> list[bytes]:
        """Masks (PNG bytes) for encoded images (PNG 8/16-bit, JPEG, BMP), via ``predict_png``."""
        if not images:
            return []
        body = {
            "signature_name": "predict_png",
            "instances": [{"b64": base64.b64encode(data).decode()} for data in images],
        }
        answer = self.predict(body)
        predictions = answer.get("predictions")
        if not isinstance(predictions, list) or len(predictions) != len(images):
            raise ServingError(f"unexpected answer from {self.model_url}: no predictions per image")
        masks = []
        for row in predictions:
            try:
                masks.append(base64.b64decode(row["mask_png_bytes"]["b64"]))
            except (KeyError, TypeError, ValueError):
                raise ServingError(
                    "the served model has no predict_png signature with mask_png_bytes; export it "
                    "with keras-unet export"
                ) from None
        return masks


def graph_error(message: str) -> str:
    """The line of a TensorFlow graph error that says what is wrong (an assertion's own
    message, or a check's), without TensorFlow's framing."""
    for line in (m.strip() for m in message.splitlines()):
        if line.startswith("assertion failed: ["):
            return line[len("assertion failed: ["):].split("]", 1)[0]
        if line and not line.startswith(("Graph execution error", "Detected at node", "<stack",
                                         "[[", "{{")):
            return line.split(" : Tensor had")[0]
    return message.strip().splitlines()[0] if message.strip() else "graph error"



def _error_line(status: int, text: str, url: str) -> str:
    """One line from TF Serving's ``{"error": "..."}`` body (or the raw text); a graph
    assertion's own message when there is one (the model's refusal of its input)."""
    try:
        message = json.loads(text).get("error", text)
    except (json.JSONDecodeError, AttributeError):
        message = text
    if "assertion failed: [" in str(message) or "Tensor had" in str(message):
        message = graph_error(str(message))
    message = " ".join(str(message).split()) or "no message"
    hint = {404: " (is the model name or version right? keras-unet serving-status lists them)",
            503: " (the model is not ready yet; try again shortly)"}.get(status, "")
    return f"TF Serving answered {status} for {url}: {message}{hint}"


def describe_status(server: str, model: str, status: dict, metadata: dict) -> list[str]:
    """Lines for people: a served model's versions and states, then its signatures."""
    lines = [f"Model {model} at {server}:"]
    for v in status.get("model_version_status", []):
        error = v.get("status", {}).get("error_message", "")
        lines.append(f"  version {v.get('version')}: {v.get('state')}" + (f" ({error})" if error else ""))
    sigs = metadata.get("metadata", {}).get("signature_def", {}).get("signature_def", {})
    lines.append(f"Signatures of version {metadata.get('model_spec', {}).get('version', '?')}:")

    def describe(tensors: dict) -> str:
        parts = []
        for alias, info in sorted(tensors.items()):
            dims = info.get("tensor_shape", {}).get("dim", [])
            shape = ",".join(str(d.get("size")) for d in dims)
            parts.append(f"{alias}: {info.get('dtype', '?').removeprefix('DT_').lower()}[{shape}]")
        return ", ".join(parts)

    for name, sig in sorted(sigs.items()):
        if not name.startswith("__"):
            lines.append(f"  {name}({describe(sig.get('inputs', {}))}) -> "
                         f"{describe(sig.get('outputs', {}))}")
    return lines
