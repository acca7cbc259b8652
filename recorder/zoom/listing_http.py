"""``ZoomListing`` over Zoom's REST API: what started at Zoom in a time range.

Endpoints, all paged with ``page_size`` / ``next_page_token`` (Zoom's documented shapes as
best known; every field is optional and read tolerantly, a wrong type counts as absent):

* Meetings and webinars: the dashboard, ``GET /v2/metrics/meetings`` and
  ``GET /v2/metrics/webinars`` with ``type=past`` and ``type=live``, ``from`` / ``to`` as UTC
  dates (``yyyy-mm-dd``; the dashboard is day-granular). Items in ``meetings[]`` /
  ``webinars[]``: ``uuid``, ``id``, ``topic``, ``host_id`` / ``user_id``, ``email``,
  ``start_time``, ``end_time``.
* Contact Center: ``GET /v2/contact_center/engagements`` with ``from`` / ``to`` as UTC
  date-times (``yyyy-MM-ddTHH:mm:ssZ``). Items in ``engagements[]``: ``engagement_id``,
  ``start_time``, ``end_time``, ``direction``, the first of ``queues[]`` / ``agents[]`` /
  ``consumers[]`` (as ``directory_http`` reads them) or flat ``queue_id`` / ``user_id``.
* Phone: ``GET /v2/phone/call_history`` with ``from`` / ``to`` as UTC dates. Items in
  ``call_history[]`` (or the older ``call_logs[]``): ``call_id``, ``start_time`` /
  ``answer_time``, ``end_time``, ``user_id``, caller and callee numbers, ``direction``.

Rules:

1. Every item becomes an ``Announcement`` for the configured account (the Server-to-Server app
   lists one account; an item's own ``account_id`` wins when it has one). Its ``started_ms``
   must lie in ``[since_ms, until_ms)``: date-granular answers are filtered here.
2. An item without an id or a readable start time is skipped and counted (``skipped``), never
   guessed; an answer that is not a JSON object is a ``ZoomApiError``.
3. Paging is bounded: at most ``max_pages`` pages per listing, and a ``next_page_token`` seen
   before in the same listing is a ``ZoomApiError`` (a looping peer cannot keep us forever).
4. The same instance listed twice (live, then past; on two pages or two windows) is one
   announcement.
5. A range longer than 30 days is asked in 30-day windows (Zoom's limit for these lists); a
   range outside 2000 to 2100, or empty, is refused before anything is asked.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from recorder.completeness.announcements import Announcement
from recorder.completeness.model import EnrichmentFields
from recorder.errors import ZoomApiError
from recorder.products import Product
from recorder.zoom.client import ZoomApiClient
from recorder.zoom.directory_http import parse_engagement

logger = logging.getLogger(__name__)

#: Longest text kept from one field (a hostile answer cannot grow the catalog).
_MAX_FIELD: Final = 512
#: Longest ``next_page_token`` sent back (Zoom's are short; a huge one is refused).
_MAX_TOKEN: Final = 1024
DEFAULT_PAGE_SIZE: Final = 300
DEFAULT_MAX_PAGES: Final = 100
#: Longest range asked in one listing: Zoom's call history and dashboard take at most a month.
WINDOW_MS: Final = 30 * 86_400_000
#: Earliest and latest times a listing may name (a typo cannot ask for year 1 or 9999).
_MIN_MS: Final = 946_684_800_000  # 2000-01-01
_MAX_MS: Final = 4_102_444_800_000  # 2100-01-01


def _text(data: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:_MAX_FIELD]
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def parse_time_ms(value: object) -> int | None:
    """An ISO 8601 time (``Z`` or an offset; naive means UTC) in ms, else None."""
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        return None
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    try:
        return int(when.timestamp() * 1000)
    except (OverflowError, ValueError):
        return None


def utc_date(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d")


def utc_datetime(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Mapping[str, Any]]
    next_token: str | None


def parse_page(body: Any, keys: Sequence[str], where: str) -> Page:
    """The items (objects only) under the first of ``keys`` holding a list, and the next token."""
    if not isinstance(body, dict):
        raise ZoomApiError(f"Zoom API {where}: the answer is not a JSON object")
    items: list[Mapping[str, Any]] = []
    for key in keys:
        found = body.get(key)
        if isinstance(found, list):
            items = [item for item in found if isinstance(item, dict)]
            break
    token = body.get("next_page_token")
    next_token = token if isinstance(token, str) and token.strip() else None
    if next_token is not None and len(next_token) > _MAX_TOKEN:
        raise ZoomApiError(f"Zoom API {where}: next_page_token is longer than {_MAX_TOKEN}")
    return Page(items, next_token)


class PageGuard:
    """Rule 3, sans-IO: ``follow(token)`` says whether to fetch the page ``token`` names."""

    def __init__(self, where: str, max_pages: int) -> None:
        self._where = where
        self._max_pages = max_pages
        self._seen: set[str] = set()
        self.pages = 0

    def follow(self, token: str | None) -> bool:
        self.pages += 1
        if token is None:
            return False
        if token in self._seen:
            raise ZoomApiError(
                f"Zoom API {self._where}: next_page_token repeats after {self.pages} page(s); "
                "the listing is not trusted"
            )
        if self.pages >= self._max_pages:
            raise ZoomApiError(
                f"Zoom API {self._where}: more than {self._max_pages} pages; narrow --since"
            )
        self._seen.add(token)
        return True


def parse_meeting_item(
    item: Mapping[str, Any], product: Product, account_id: str | None
) -> Announcement | None:
    instance_id = _text(item, "uuid")
    number = _text(item, "id")
    started = parse_time_ms(item.get("start_time"))
    if (instance_id is None and number is None) or started is None:
        return None
    host_id = _text(item, "host_id", "user_id")
    return Announcement(
        event=f"{product.value}.listed",
        product=product,
        instance_id=instance_id or number or "",
        target_id=number or instance_id or "",
        account_id=_text(item, "account_id") or account_id,
        user_id=host_id,
        queue_id=None,
        started_ms=started,
        ended_ms=parse_time_ms(item.get("end_time")),
        known=EnrichmentFields(
            topic=_text(item, "topic"),
            host_id=host_id,
            host_email=_text(item, "email", "host_email"),
        ),
    )


def parse_engagement_item(item: Mapping[str, Any], account_id: str | None) -> Announcement | None:
    engagement_id = _text(item, "engagement_id", "id")
    started = parse_time_ms(item.get("start_time"))
    if engagement_id is None or started is None:
        return None
    info = parse_engagement(engagement_id, item)
    return Announcement(
        event="contact_center.engagement.listed",
        product=Product.CONTACT_CENTER,
        instance_id=engagement_id,
        target_id=engagement_id,
        account_id=_text(item, "account_id") or account_id,
        user_id=info.agent_id,
        queue_id=info.queue_id,
        started_ms=started,
        ended_ms=parse_time_ms(item.get("end_time")),
        known=EnrichmentFields(
            queue_id=info.queue_id,
            queue_name=info.queue_name,
            agent_id=info.agent_id,
            agent_name=info.agent_name,
            agent_email=info.agent_email,
            consumer_number=info.consumer_number,
            direction=info.direction,
        ),
    )


def parse_call_item(item: Mapping[str, Any], account_id: str | None) -> Announcement | None:
    call_id = _text(item, "call_id")
    started = parse_time_ms(item.get("start_time"))
    if started is None:
        started = parse_time_ms(item.get("answer_time"))
    if call_id is None or started is None:
        return None
    user_id = _text(item, "user_id")
    return Announcement(
        event="phone.call.listed",
        product=Product.PHONE,
        instance_id=call_id,
        target_id=call_id,
        account_id=_text(item, "account_id") or account_id,
        user_id=user_id,
        queue_id=None,
        started_ms=started,
        ended_ms=parse_time_ms(item.get("end_time")),
        known=EnrichmentFields(
            agent_id=user_id,
            caller_number=_text(item, "caller_did_number", "caller_ext_number", "caller_number"),
            callee_number=_text(item, "callee_did_number", "callee_ext_number", "callee_number"),
            direction=_text(item, "direction"),
        ),
    )


@dataclass(frozen=True, slots=True)
class _Listing:
    path: str
    keys: tuple[str, ...]
    params: Mapping[str, str]
    product: Product


class HttpZoomListing:
    """``recorder.completeness.pull.ZoomListing`` on a ``ZoomApiClient``."""

    def __init__(
        self,
        client: ZoomApiClient,
        account_id: str | None,
        *,
        products: Sequence[Product] = tuple(Product),
        page_size: int = DEFAULT_PAGE_SIZE,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> None:
        if page_size < 1 or max_pages < 1:
            raise ValueError("page_size and max_pages must be at least 1")
        self._client = client
        self._account_id = account_id
        self._products = frozenset(products)
        self._page_size = page_size
        self._max_pages = max_pages
        #: Items left out by the last ``started_between`` (no id or no readable start time).
        self.skipped = 0

    def _listings(self, since_ms: int, until_ms: int) -> Iterator[_Listing]:
        """Rule 5: each listing of each window (``until_ms`` exclusive)."""
        start = since_ms
        while start < until_ms:
            end = min(until_ms, start + WINDOW_MS)
            yield from self._window(start, end)
            start = end

    def _window(self, since_ms: int, until_ms: int) -> Iterator[_Listing]:
        day_from, day_to = utc_date(since_ms), utc_date(until_ms - 1)
        for product, path, key in (
            (Product.MEETING, "/metrics/meetings", "meetings"),
            (Product.WEBINAR, "/metrics/webinars", "webinars"),
        ):
            if product in self._products:
                for kind in ("past", "live"):
                    params = {"type": kind, "from": day_from, "to": day_to}
                    yield _Listing(path, (key,), params, product)
        if Product.CONTACT_CENTER in self._products:
            params = {"from": utc_datetime(since_ms), "to": utc_datetime(until_ms - 1)}
            yield _Listing(
                "/contact_center/engagements", ("engagements",), params, Product.CONTACT_CENTER
            )
        if Product.PHONE in self._products:
            params = {"from": day_from, "to": day_to}
            yield _Listing(
                "/phone/call_history", ("call_history", "call_logs"), params, Product.PHONE
            )

    def _parse(self, listing: _Listing, item: Mapping[str, Any]) -> Announcement | None:
        if listing.product in (Product.MEETING, Product.WEBINAR):
            return parse_meeting_item(item, listing.product, self._account_id)
        if listing.product is Product.CONTACT_CENTER:
            return parse_engagement_item(item, self._account_id)
        return parse_call_item(item, self._account_id)

    async def started_between(self, since_ms: int, until_ms: int) -> Sequence[Announcement]:
        """Raises ``ZoomApiError`` (Zoom's code and message) when any listing fails."""
        if not _MIN_MS <= since_ms < until_ms <= _MAX_MS:
            raise ZoomApiError(
                "a Zoom listing needs a non-empty range between 2000 and 2100 "
                f"(asked {since_ms} to {until_ms} ms)"
            )
        found: dict[tuple[Product, str], Announcement] = {}
        skipped = 0
        for listing in self._listings(since_ms, until_ms):
            where = f"GET /v2{listing.path}"
            guard = PageGuard(where, self._max_pages)
            token: str | None = None
            while True:
                params = dict(listing.params, page_size=str(self._page_size))
                if token is not None:
                    params["next_page_token"] = token
                answer = await self._client.request("GET", listing.path, params=params)
                page = parse_page(answer.body, listing.keys, where)
                for item in page.items:
                    a = self._parse(listing, item)
                    if a is None:
                        skipped += 1
                    elif since_ms <= a.started_ms < until_ms:
                        key = (a.product, a.instance_id)
                        known = found.get(key)
                        # Rule 4: a past listing (with its end) wins over a live one.
                        if known is None or (known.ended_ms is None and a.ended_ms is not None):
                            found[key] = a
                if not guard.follow(page.next_token):
                    break
                token = page.next_token
        self.skipped = skipped
        if skipped:
            logger.warning("Zoom's lists held %d item(s) without an id or start time", skipped)
        return sorted(found.values(), key=lambda a: (a.started_ms, a.product.value, a.instance_id))
