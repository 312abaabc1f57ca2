"""Watch streams: chunked HTTP, one JSON event per line."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Callable, Optional

from aiohttp import web

from . import errors
from .resources import Resource
from .selectors import Matcher
from .store import Store, WatchEvent

_STOP = object()


@dataclass(frozen=True)
class WatchRequest:
    resource: Resource
    namespace: str
    matcher: Matcher
    since: Optional[int]            # None: start with synthetic ADDED events
    timeout: Optional[float]        # timeoutSeconds
    bookmarks: bool                 # allowWatchBookmarks
    initial_events_end: bool        # sendInitialEvents=true: BOOKMARK after the initial ADDED
    render: Callable[[dict], dict]  # object -> what goes on the wire (JSON, Table row...)


def filter_event(event: WatchEvent, matcher: Matcher) -> Optional[str]:
    """The event type this watcher sees, or None. Objects that enter or leave the
    selector turn into ADDED / DELETED, as the watch cache does."""
    if event.type == "BOOKMARK":
        return event.type
    now = matcher(event.object)
    before = event.old is not None and matcher(event.old)
    if event.type == "MODIFIED":
        return "MODIFIED" if now and before else "ADDED" if now else "DELETED" if before else None
    return event.type if now else None


def _line(event_type: str, obj: dict) -> bytes:
    return (json.dumps({"type": event_type, "object": obj}) + "\n").encode()


class WatchHub:
    """Serves watch requests and remembers them, so they can all be dropped at once."""

    def __init__(self, store: Store, bookmark_interval: float):
        self.store = store
        self.bookmark_interval = bookmark_interval
        self._queues: set[asyncio.Queue] = set()

    def drop_all(self) -> None:
        """End every open watch stream (call on the server's loop)."""
        for queue in self._queues:
            queue.put_nowait(_STOP)

    @property
    def open_streams(self) -> int:
        return len(self._queues)

    async def serve(self, request: web.Request, watch: WatchRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json",
                                               "Cache-Control": "no-cache, private"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        try:
            subscription = self.store.watch(
                watch.resource.plural, watch.namespace, watch.since,
                lambda event: loop.call_soon_threadsafe(queue.put_nowait, event),
                initial_events_end=watch.initial_events_end)
        except errors.ApiError as error:        # 410: too old resource version
            await response.write(_line("ERROR", error.status()))
            return response
        self._queues.add(queue)
        try:
            await self._pump(response, queue, subscription, watch, loop)
        finally:
            subscription.close()
            self._queues.discard(queue)
        return response

    async def _pump(self, response, queue, subscription, watch, loop) -> None:
        deadline = loop.time() + watch.timeout if watch.timeout else None
        next_bookmark = loop.time() + self.bookmark_interval if watch.bookmarks else None
        while True:
            wake = min((t for t in (deadline, next_bookmark) if t is not None), default=None)
            try:
                if wake is None:
                    event = await queue.get()
                else:
                    event = await asyncio.wait_for(queue.get(), max(wake - loop.time(), 0))
            except asyncio.TimeoutError:
                if deadline is not None and loop.time() >= deadline:
                    return
                subscription.bookmark()
                next_bookmark = loop.time() + self.bookmark_interval
                continue
            if event is _STOP:
                return
            event_type = filter_event(event, watch.matcher)
            if event_type == "BOOKMARK":
                await response.write(_line(event_type, event.object))
            elif event_type:
                await response.write(_line(event_type, watch.render(event.object)))
