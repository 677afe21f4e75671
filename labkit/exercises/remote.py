"""A learner's definitions as the grader's checker sees them: names that live in a sandbox.

The checker never runs learner code. It holds a `Remote` for each name an exercise reads and a
`Channel` to the sandbox's servant (`labkit.grading.servant`), and it can only ask: what is
this name, call it with these JSON arguments, run this registered experiment on it, put it
behind this route. Every answer is data chosen by the sandbox, so checks read answers as
claims and base verdicts on evidence the sandbox cannot forge (the checker's own HTTP answers,
the grader's mock LLM, the database).

    channel = Channel("/tmp/run/work/servant.sock")
    names = RemoteNamespace(channel)
    exercise.outcome(names)          # evaluate() receives Remote objects
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

MAX_ANSWER = 2_000_000  # bytes the checker reads of one servant answer, at most


class ChannelError(RuntimeError):
    """The sandbox did not answer the checker as the protocol says."""


class Channel:
    """HTTP over the servant's Unix socket; a new connection per call (any loop, any thread)."""

    def __init__(self, path: str, *, timeout_s: float = 120.0) -> None:
        self.path = path
        self.timeout_s = timeout_s

    def post(
        self, action: str, payload: Mapping[str, Any] | None = None, timeout_s: float | None = None
    ) -> Any:
        """Send one control request and return its JSON answer."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        body = json.dumps(dict(payload or {})).encode()
        connection = _UnixHTTPConnection(self.path, timeout)
        try:
            connection.request(
                "POST",
                f"/__labkit__/{action}",
                body=body,
                headers={"content-type": "application/json"},
            )
            response = connection.getresponse()
            data = response.read(MAX_ANSWER + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise ChannelError(f"the sandbox did not answer {action!r}: {exc}") from None
        finally:
            connection.close()
        if len(data) > MAX_ANSWER:
            raise ChannelError(f"the sandbox's answer passed {MAX_ANSWER} bytes")
        try:
            return json.loads(data)
        except ValueError:
            raise ChannelError(f"the sandbox's answer to {action!r} is not JSON") from None

    async def apost(
        self, action: str, payload: Mapping[str, Any] | None = None, timeout_s: float | None = None
    ) -> Any:
        import asyncio

        return await asyncio.to_thread(self.post, action, payload, timeout_s)


@dataclass(eq=False)
class Remote:
    """One learner definition in the sandbox: what it claims to be, and how to reach it."""

    name: str
    kind: str  # "async function", "async generator function", "function", "class", "value"
    type_name: str
    source: str | None
    channel: Channel
    value: Any = None  # the JSON value of a plain value

    @property
    def is_async(self) -> bool:
        return self.kind == "async function"

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name} in the grading sandbox>"


class RemoteNamespace(Mapping[str, Remote]):
    """The sandbox's user namespace, as far as the checker asks about it."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._known: dict[str, Remote | None] = {}

    def _describe(self, name: str) -> Remote | None:
        if name not in self._known:
            answer = self.channel.post("info", {"names": [name]}).get(name)
            if not isinstance(answer, dict):
                raise ChannelError(f"the sandbox gave no description of {name!r}")
            self._known[name] = (
                Remote(
                    name=name,
                    kind=str(answer.get("kind", "value")),
                    type_name=str(answer.get("type", "")),
                    source=answer.get("source") if isinstance(answer.get("source"), str) else None,
                    channel=self.channel,
                    value=answer.get("value"),
                )
                if answer.get("defined")
                else None
            )
        return self._known[name]

    def __getitem__(self, name: str) -> Remote:
        found = self._describe(name)
        if found is None:
            raise KeyError(name)
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._describe(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter([name for name, found in self._known.items() if found is not None])

    def __len__(self) -> int:
        return sum(found is not None for found in self._known.values())


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix socket, closing the socket when the connect fails.

    The standard library, not httpx2, for control calls: httpcore leaves the socket of a failed
    Unix-socket connect unclosed, and the checker connects before the servant listens.
    """

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("127.0.0.1", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
