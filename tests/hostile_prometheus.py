"""A hostile Prometheus for the generator's tests: an aiohttp server on loopback, in a thread.

Each path prefix is one misbehaviour; the rest of the path is the usual `/api/v1/...`:

* `/ok/`: a valid empty vector;
* `/drip/`: a valid answer, one byte every 0.2 s (no single read ever times out);
* `/drip-headers/`: the same for the status line and headers, written raw on the socket;
* `/huge/` and `/huge-chunked/`: 100 MB of JSON, with and without Content-Length;
* `/gzip/`: a gzip body although identity was asked;
* `/redirect/`: 302 to the same server under another loopback address (another host),
  which records whatever reaches it in `requests`.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
from dataclasses import dataclass, field

from aiohttp import web

OK_BODY = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
HUGE_BYTES = 100 << 20
_BLOCK = 1 << 20


@dataclass
class Seen:
    host: str
    path: str
    headers: dict[str, str]


@dataclass
class HostilePrometheus:
    port: int = 0
    requests: list[Seen] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)  # bytes written per mode
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    def url(self, mode: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{mode}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        self.requests.append(
            Seen(request.host.rsplit(":", 1)[0], request.path, dict(request.headers))
        )
        if mode == "ok":
            return web.Response(body=OK_BODY, content_type="application/json")
        if mode == "redirect":
            raise web.HTTPFound(f"http://127.0.0.2:{self.port}/ok/api/v1/query")
        if mode == "drip-headers":
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: "
            transport = request.transport
            assert transport is not None
            self.sent[mode] = 0
            for index in range(len(head) + 1000):
                if transport.is_closing():
                    break
                transport.write(head[index : index + 1] if index < len(head) else b"p")
                self.sent[mode] += 1
                await asyncio.sleep(0.2)
            transport.close()
            return web.Response()  # never sent: the connection is closed
        if mode == "gzip":
            return web.Response(
                body=gzip.compress(OK_BODY),
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if mode == "huge":
            response.content_length = HUGE_BYTES
        await response.prepare(request)
        self.sent[mode] = 0
        try:
            if mode == "drip":
                for index in range(len(OK_BODY)):
                    await response.write(OK_BODY[index : index + 1])
                    self.sent[mode] += 1
                    await asyncio.sleep(0.2)
            else:
                block = b" " * _BLOCK  # JSON whitespace: valid if it were ever read whole
                for _ in range(HUGE_BYTES // _BLOCK):
                    await response.write(block)
                    self.sent[mode] += _BLOCK
            await response.write_eof()
        except ConnectionError:
            pass
        return response

    def __enter__(self) -> HostilePrometheus:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_route("*", "/{mode}/{rest:.*}", self._handle)
            self._runner = web.AppRunner(app, shutdown_timeout=0.1)
            loop.run_until_complete(self._runner.setup())
            # 127.0.0.0/8 is all loopback on Linux: 127.0.0.2 is "another host" to a client.
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
            other = web.TCPSite(self._runner, "127.0.0.2", self.port)
            loop.run_until_complete(other.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("hostile Prometheus did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
