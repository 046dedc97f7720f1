"""Async scraping: `async def` tasks with `concurrency`, against a local HTTP server.

The main process serves a small, slow web site on 127.0.0.1 (`asyncio.start_server`,
port 0: any free port). The workers scrape it with `asyncio.open_connection`: each
worker runs the `async def` task on its own event loop, `concurrency` pages at once.
The main process awaits the map, so its event loop keeps serving the pages the
workers ask for. Nothing leaves the machine and no third-party HTTP client is needed.

Run it with `python examples/async_scraper.py`. Set the environment variable
`PARMAP_EXAMPLE_SLEEP_SCALE` (default 1) to shorten the server's simulated latency,
e.g. `0.05`.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from urllib.parse import urlsplit

from parmap import parallel

#: Multiplies the simulated latency; 1 gives a run of about five seconds.
SLEEP_SCALE = float(os.environ.get("PARMAP_EXAMPLE_SLEEP_SCALE", "1"))

#: Seconds the server waits before it answers a request: a slow site, where awaiting
#: many pages at once pays.
LATENCY = 0.2 * SLEEP_SCALE

#: Pages on the site; two workers, ten pages at once each.
PAGES = 40
WORKERS = 2
CONCURRENCY = 10

_TITLE = re.compile(rb"<title>(.*?)</title>")


class Site:
    """The local web site: `/page/N` answers after `LATENCY` seconds.

    It counts the requests it serves at once.
    """

    def __init__(self) -> None:
        self.open_requests = 0
        self.most_at_once = 0

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        request_line = await reader.readline()
        while await reader.readline() not in (b"\r\n", b"\n", b""):
            pass  # the request's headers
        path = request_line.split()[1].decode()
        self.open_requests += 1
        self.most_at_once = max(self.most_at_once, self.open_requests)
        try:
            await asyncio.sleep(LATENCY)
        finally:
            self.open_requests -= 1
        title = f"<title>Title of {path}</title>"
        body = f"<html><head>{title}</head><body>...</body></html>".encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: text/html\r\n"
            b"Connection: close\r\n"
        )
        writer.write(f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()
        await writer.wait_closed()


@parallel(workers=WORKERS, concurrency=CONCURRENCY, timeout=10, retries=2)
async def fetch_title(url: str) -> str:
    """GET `url` over a fresh connection; return the page's `<title>`."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(
            f"GET {parts.path} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        # The server closes the connection after its answer.
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if status != 200:
        raise ConnectionError(f"{url}: HTTP {status}")
    title = _TITLE.search(body)
    return title.group(1).decode() if title else ""


async def main() -> None:
    site = Site()
    server = await asyncio.start_server(site.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    urls = [f"http://127.0.0.1:{port}/page/{number}" for number in range(PAGES)]
    async with server:
        # Start the pool, so the timings compare the maps alone.
        await fetch_title.map_async(urls[:WORKERS])

        started = time.perf_counter()
        one_at_a_time = await fetch_title.map_async(urls, concurrency=1)
        sequential_seconds = time.perf_counter() - started

        started = time.perf_counter()
        site.most_at_once = 0
        # The decorator's concurrency: 10 per worker.
        titles = await fetch_title.map_async(urls)
        concurrent_seconds = time.perf_counter() - started

        expected = [f"Title of /page/{number}" for number in range(PAGES)]
        assert titles == one_at_a_time == expected
        print(f"{len(titles)} pages, first: {titles[0]!r}, last: {titles[-1]!r}")
        speedup = sequential_seconds / concurrent_seconds
        print(
            f"concurrency={CONCURRENCY} on {WORKERS} workers: "
            f"up to {site.most_at_once} requests at once, "
            f"{speedup:.1f}x as fast as concurrency=1"
        )

        # Results as they complete, with a bar: the loop is free as workers scrape.
        done = 0
        bar = {"desc": "scraping", "unit": "page"}
        async for title in fetch_title.aimap_unordered(urls, progress=bar):
            done += bool(title)
        print(f"aimap_unordered: {done} titles in completion order")


if __name__ == "__main__":
    asyncio.run(main())
