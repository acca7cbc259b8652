"""Queue and agent searches as newest-first walks (migration 19), on SQLite and PostgreSQL: the
UNION of per-place walks finds exactly what a plain query over every recording finds, page
after page, wherever the queue or agent is named (the recording's columns, its enrichment, a
participant's role); and the engines walk ``recordings_by_*_started`` without sorting every
recording of the queue."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.catalog import SqlCatalog
from recorder.catalog._search import search_sql
from recorder.catalog.base import (
    ParticipantInfo,
    Product,
    RecordingStart,
    RecordingStatus,
    StreamEvent,
    StreamState,
)
from recorder.catalog.schema import Engine
from recorder.catalog.search import AGENT_ROLES, RecordingQuery
from recorder.completeness.model import EnrichmentFields
from tests.catalog.support import (
    T0,
    CatalogTarget,
    every_page,
    explain,
    fill_for_plans,
    reference_ids,
)

pytestmark = pytest.mark.timeout(120)
MINUTE = 60_000
PRODUCTS = (Product.CONTACT_CENTER, Product.PHONE, Product.MEETING)
#: Fewer instances than recordings: an enrichment names every recording of its instance.
INSTANCES = 45
QUEUES = ("q-1", "q-2", "q-3")
AGENTS = ("ag-1", "ag-2", "ag-3")


def _name(rng: random.Random, kind: str, n: int) -> str:
    return rng.choice((f"{kind} {n}", f"{kind.upper()} {n}", f"{kind.lower()} {n}"))


def _world(catalog: SqlCatalog, count: int, seed: int) -> None:
    """``count`` recordings, start times with ties, some unfinished; queues and agents named on
    the recording, in an enrichment of its instance, by participants (two of one name in some
    recordings, and in roles that do not make an agent)."""
    rng = random.Random(seed)
    for n in range(count):
        instance = n % INSTANCES
        product = PRODUCTS[instance % len(PRODUCTS)]
        started = T0 + rng.randrange(40) * MINUTE  # 40 slots: many ties, broken by the id
        stream = f"stream-{n}"
        catalog.upsert_stream(
            StreamEvent(
                stream, product, f"instance-{instance}", StreamState.STARTED, started, ("wss://a",)
            ),
            now_ms=started,
        )
        rid = catalog.upsert_recording(
            RecordingStart(stream, product, f"instance-{instance}", started), now_ms=started
        ).recording_id
        if n % 7:
            catalog.end_recording(
                rid,
                ended_ms=started + rng.randrange(1, 30) * MINUTE,
                reason="done",
                status=RecordingStatus.COMPLETE,
            )
        if rng.random() < 0.5:
            q, a = rng.randrange(1, 4), rng.randrange(1, 4)
            catalog.set_contact_center(
                rid,
                queue_id=f"q-{q}" if rng.random() < 0.7 else None,
                queue_name=_name(rng, "Queue", q) if rng.random() < 0.7 else None,
                agent_id=f"ag-{a}" if rng.random() < 0.7 else None,
                agent_name=_name(rng, "Agent", a) if rng.random() < 0.7 else None,
            )
        people = []
        for i in range(rng.randrange(4)):
            # Two agents of one name in a recording (another user id) come up often.
            a = rng.randrange(1, 3)
            name = _name(rng, "Agent", a) if rng.random() < 0.7 else None
            role = rng.choice((*AGENT_ROLES, "caller", None))
            people.append(ParticipantInfo(f"ag-{a}" if i == 0 else f"u-{n}-{i}", name, role))
        catalog.add_participants(rid, people)
    catalog.enqueue_enrichments(T0)
    for instance in range(0, INSTANCES, 2):
        q, a = rng.randrange(1, 4), rng.randrange(1, 4)
        catalog.store_enrichment(
            PRODUCTS[instance % len(PRODUCTS)],
            f"instance-{instance}",
            EnrichmentFields(
                queue_id=f"q-{q}" if rng.random() < 0.5 else None,
                queue_name=_name(rng, "Queue", q) if rng.random() < 0.5 else None,
                agent_id=f"ag-{a}" if rng.random() < 0.5 else None,
                agent_name=_name(rng, "Agent", a) if rng.random() < 0.3 else None,
                agent_email=f"Agent{a}@example.com" if rng.random() < 0.3 else None,
            ),
            T0,
        )


def _reference(target: CatalogTarget, query: RecordingQuery) -> list[str]:
    """Every recording naming the queue and the agent anywhere, matching the other filters,
    newest first: one plain scan with ORs, no indexes to choose, no walks to merge."""
    clauses: list[str] = []
    params: list[object] = []
    enriched = (
        "EXISTS (SELECT 1 FROM enrichments e WHERE e.product = r.product"
        " AND e.instance_id = r.instance_id AND ({}))"
    )
    if query.queue is not None:
        clauses.append(
            "(r.cc_queue_id = ? OR LOWER(r.cc_queue_name) = LOWER(?) OR "
            + enriched.format("e.queue_id = ? OR LOWER(e.queue_name) = LOWER(?)")
            + ")"
        )
        params += [query.queue] * 4
    if query.agent is not None:
        roles = ", ".join(f"'{role}'" for role in AGENT_ROLES)
        clauses.append(
            "(r.cc_agent_id = ? OR LOWER(r.cc_agent_name) = LOWER(?) OR EXISTS (SELECT 1"
            " FROM participants p WHERE p.recording_id = r.recording_id"
            f" AND p.role IN ({roles}) AND (p.user_id = ? OR LOWER(p.user_name) = LOWER(?)))"
            " OR "
            + enriched.format(
                "e.agent_id = ? OR LOWER(e.agent_name) = LOWER(?)"
                " OR LOWER(e.agent_email) = LOWER(?)"
            )
            + ")"
        )
        params += [query.agent] * 7
    return reference_ids(target, query, clauses, params)


_queue_values = st.sampled_from(
    (*QUEUES, "queue 1", "QUEUE 2", "Queue 3", "q-9", "Agent 1", "nobody")
)
_agent_values = st.sampled_from(
    (*AGENTS, "agent 1", "AGENT 2", "agent2@example.com", "Queue 1", "nobody")
)
_queries = st.builds(
    lambda queue, agent, since, until, product, limit: RecordingQuery(
        queue=queue,
        agent=agent,
        since_ms=None if since is None else T0 + since * MINUTE,
        until_ms=None if until is None else T0 + until * MINUTE,
        product=product,
        limit=limit,
    ),
    queue=st.none() | _queue_values,
    agent=st.none() | _agent_values,
    since=st.none() | st.integers(-20, 70),
    until=st.none() | st.integers(-20, 50),
    product=st.none() | st.sampled_from(PRODUCTS),
    limit=st.integers(1, 9),
).filter(lambda query: query.queue is not None or query.agent is not None)


def test_queue_and_agent_searches_page_through_exactly_what_a_plain_query_finds(
    target: CatalogTarget,
) -> None:
    catalog = target.open()
    try:
        _world(catalog, 90, seed=5)
        # The world names queues and agents in every place the search looks.
        for filters in ({"queue": "queue 1"}, {"agent": "agent 2"}, {"agent": "ag-3"}):
            assert _reference(target, RecordingQuery(**filters)), filters  # type: ignore[arg-type]

        @settings(max_examples=150, deadline=None, database=None)
        @given(query=_queries)
        def check(query: RecordingQuery) -> None:
            assert every_page(catalog, query) == _reference(target, query)

        check()
    finally:
        catalog.close()


def _plan_rows(target: CatalogTarget, sql: str, params: list[object]) -> list[str]:
    """PostgreSQL's executed plan: one line per node, with the rows it actually produced."""
    with target.raw() as conn:
        (plan,) = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + sql.replace("?", "%s"), params
        ).fetchone()
    nodes: list[str] = []

    def walk(node: dict[str, object]) -> None:
        parts = (
            node["Node Type"],
            node.get("Scan Direction"),
            node.get("Index Name", node.get("Relation Name")),
            f"rows={node['Actual Rows']}",
        )
        nodes.append(" ".join(str(part) for part in parts if part))
        for child in node.get("Plans", []):  # type: ignore[attr-defined]
            walk(child)

    walk((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"])
    return nodes


@pytest.mark.timeout(240)
def test_queue_and_agent_searches_walk_the_time_ordered_indexes(target: CatalogTarget) -> None:
    """In a grown catalog (see ``fill_for_plans``) with 200 recordings per queue and 40 per
    agent, a page walks the new indexes newest first and reads a page of them. (A queue of a
    tenth of all recordings may rightly walk ``recordings_by_started`` instead: a page is then
    ten recordings read per hit, in the table's own order.)"""
    fill_for_plans(target, 20_000)
    with target.raw() as conn:
        conn.execute(
            "UPDATE recordings SET cc_queue_id = 'q-' || (started_ms / 1000 % 100),"
            " cc_queue_name = 'Queue ' || (started_ms / 1000 % 100),"
            " cc_agent_id = 'ag-' || (started_ms / 1000 % 500),"
            " cc_agent_name = 'Agent ' || (started_ms / 1000 % 500)"
        )
        conn.execute("ANALYZE")
    until = 15_000 * 1000
    cases = {
        "recordings_by_queue_id_started": RecordingQuery(queue="q-3", limit=20),
        "recordings_by_queue_name_started": RecordingQuery(
            queue="queue 3", until_ms=until, limit=20
        ),
        "recordings_by_agent_id_started": RecordingQuery(agent="ag-7", limit=20),
        "recordings_by_agent_name_started": RecordingQuery(
            agent="AGENT 7", until_ms=until, limit=20
        ),
    }
    for index, query in cases.items():
        sql, params = search_sql(query, Engine(target.engine))
        plan = explain(target, sql, params)
        assert index in plan, plan
        if target.engine == "sqlite":
            # The walk reads its index in order (no sort between it and the end of its
            # co-routine); only the few rows the walks return are sorted, for the page.
            lines = plan.splitlines()
            start = next(i for i, line in enumerate(lines) if index in line)
            end = next(i for i in range(start, len(lines)) if lines[i].startswith("SCAN w"))
            assert lines[start].startswith("SEARCH r USING"), plan
            assert not any("TEMP B-TREE" in line for line in lines[start:end]), plan
            assert "SCAN r" not in lines, plan
        else:
            nodes = _plan_rows(target, sql, params)
            walks = [node for node in nodes if index in node]
            assert walks, nodes
            assert all(
                node.startswith(("Index Scan Backward", "Index Only Scan Backward"))
                for node in walks
            ), nodes
            # Stops at the page (limit + 1 rows), out of thousands of matches.
            assert all(node.endswith(f" rows={query.limit + 1}") for node in walks), nodes
            assert not any(node.startswith("Seq Scan recordings") for node in nodes), nodes
