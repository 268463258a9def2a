"""What a knowledge search costs, beside a bare round trip to the same PostgreSQL.

    python bench/bench_knowledge.py [--rounds N] [--documents N] [--json]

An embedded PostgreSQL in a temporary folder; the example receptionist applied
with its FAQ (10 passages) and an agent with ``--documents`` copies of it (each
copy a document of its own, so ``--documents 100`` indexes 900 passages).
Measured, wall-clock ms per call from one thread (the jobs interleaved
round-robin, the median of the rounds, so machine noise hits all alike):

- ``reference_ping``: ``Store.ping`` (``SELECT 1`` in a transaction from the pool):
  the floor of any query the runtime makes;
- ``search_all_words``: a question every word of which one passage holds
  (``websearch_to_tsquery``, ranked by ``ts_rank_cd``);
- ``search_some_words``: a question no passage holds whole: the all-words query
  finds nothing, then the OR query runs (two queries);
- ``search_miss``: words no passage has (two queries, no rows);
- the same three on the large agent.

Also the chunker's speed on the large agent's documents (``chunk_ms``). Ratios
to the reference carry across machines: the search's cost is the round trip
plus its ranking, and a caller's ~2 s budget is three orders of magnitude away.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from switchboard.orchestrator.agent_file import load_agent_file
from switchboard.orchestrator.agents import KnowledgeSource
from switchboard.orchestrator.db import Database, migrate
from switchboard.orchestrator.embedded_pg import start_embedded
from switchboard.orchestrator.knowledge import chunk_sources
from switchboard.orchestrator.knowledge_store import KnowledgeIndex
from switchboard.orchestrator.server import example_agent_path
from switchboard.orchestrator.store import Store

QUERIES = {
    "all_words": "do you take insurance",
    "some_words": "is there parking for my bicycle",
    "miss": "xylophone quartz",
}


def timed_ms(fn: Callable[[], object], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) * 1000 / repeat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=50, help="calls per job per round")
    parser.add_argument("--documents", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    example = load_agent_file(example_agent_path())
    faq = example.knowledge[0].text
    large = replace(
        example,
        name="large",
        phone_numbers=(),
        knowledge=tuple(KnowledgeSource(f"faq-{i}.md", faq) for i in range(args.documents)),
    )
    start = time.perf_counter()
    chunks = chunk_sources(large.knowledge)
    chunk_ms = (time.perf_counter() - start) * 1000

    with tempfile.TemporaryDirectory() as tmp, start_embedded(Path(tmp)) as pg:
        migrate(pg.uri)
        with Database(pg.uri) as db:
            store = Store(db)
            index = KnowledgeIndex(db)
            small_id = store.apply_agent(example)
            large_id = store.apply_agent(large)
            tenant = store.tenant_by_name(example.tenant)
            assert tenant is not None
            jobs: dict[str, Callable[[], object]] = {"reference_ping": store.ping}
            for label, agent_id in (("", small_id), ("large_", large_id)):
                for kind, query in QUERIES.items():
                    jobs[f"{label}search_{kind}"] = lambda a=agent_id, q=query: index.search_sync(
                        tenant, a, q, 3
                    )
            for job in jobs.values():  # warm the pool and the caches
                timed_ms(job, 5)
            samples: dict[str, list[float]] = {name: [] for name in jobs}
            for _ in range(args.rounds):
                for name, job in jobs.items():
                    samples[name].append(timed_ms(job, args.repeat))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    reference = medians["reference_ping"]
    report = {
        "passages": {"example": len(chunk_sources(example.knowledge)), "large": len(chunks)},
        "chunk_ms": round(chunk_ms, 2),
        "ms": {name: round(value, 3) for name, value in medians.items()},
        "ratio_to_ping": {name: round(value / reference, 2) for name, value in medians.items()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"chunking {len(chunks)} passages of {args.documents} documents: {chunk_ms:.1f} ms")
    print(f"{'job':32} {'ms/call':>9} {'x ping':>8}")
    for name, value in medians.items():
        print(f"{name:32} {value:9.3f} {value / reference:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
