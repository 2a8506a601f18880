"""What PostgreSQL spends writing the ledger's sightings: the agents table as migrated
(head) against the schema before its fill factor (``0010_staged_rollouts``), side by side.

    .venv/bin/python benchmarks/ledger_writes.py [--agents 10000] [--batch 1250]
        [--changes 8] [--rounds 3] [--no-save]

Each variant gets a fresh database, migrated to its revision, with ``--agents`` rows.
Then ``--changes`` times, every agent reports a new applied version, written in batches
of ``--batch`` by the controller's own ``controller.sightings.write_sightings`` (what a
replica's ledger does every ``LEDGER_FLUSH_SECONDS`` while a change lands: 1,250 rows is
a quarter second of a 10,000-agent fleet confirming within two). Measured per change:
the CPU of the database's server process for the connection (``/proc``, user + system)
and the wall time; at the end, how many updates stayed on their page (heap-only tuples)
and the table's and its indexes' size. No vacuum runs between changes, as none does
within a change on a busy server. The variants alternate round by round.

Writes benchmarks/results/ledger_writes.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import _support as S  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncConnection  # noqa: E402

from controller import migrations  # noqa: E402
from controller.db import agents, create_engine  # noqa: E402
from controller.sightings import Sighting, write_sightings  # noqa: E402

RESULTS_FILE = "ledger_writes.json"
VARIANTS = {"head": "head", "before": "0010_staged_rollouts"}


async def _insert_agents(conn: AsyncConnection, count: int) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(count)]
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "id": str(agent_id),
            "hostname": f"edge-{n:05d}.example.internal",
            "labels": {"env": "prod", "zone": f"zone-{n % 3}"},
            "token_hash": agent_id.hex * 2,
            "registered_at": now,
            "assigned_version": 1,
            "registration_key": (agent_id.hex + "k").ljust(64, "0"),
        }
        for n, agent_id in enumerate(ids)
    ]
    await conn.execute(insert(agents), rows)
    await conn.commit()
    return ids


async def _one_variant(database_url: str, *, opts: argparse.Namespace) -> dict[str, Any]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            ids = await _insert_agents(conn, opts.agents)
            pid = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            await conn.commit()
            changes = []
            for change in range(opts.changes):
                cpu, started = S.proc_cpu_seconds(pid), time.perf_counter()
                for first in range(0, len(ids), opts.batch):
                    seen = time.time()
                    batch = {
                        agent_id: Sighting(
                            seen=seen,
                            applied_version=change + 2,
                            worker_drift=False,
                            applied_since=seen,
                        )
                        for agent_id in ids[first : first + opts.batch]
                    }
                    await write_sightings(conn, batch)
                    await conn.commit()
                changes.append(
                    {
                        "pg_cpu_seconds": round(S.proc_cpu_seconds(pid) - cpu, 3),
                        "wall_seconds": round(time.perf_counter() - started, 3),
                    }
                )
            await conn.execute(text("SELECT pg_stat_force_next_flush()"))
            await conn.commit()
            sizes = (
                await conn.execute(
                    text(
                        "SELECT pg_table_size('agents'), pg_indexes_size('agents'), "
                        "coalesce((SELECT reloptions::text FROM pg_class "
                        "WHERE relname = 'agents'), '')"
                    )
                )
            ).one()
            counts = (
                await conn.execute(
                    text(
                        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                        "WHERE relname = 'agents'"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    return {
        "changes": changes,
        "pg_cpu_seconds_per_change_median": S.median([c["pg_cpu_seconds"] for c in changes]),
        "wall_seconds_per_change_median": S.median([c["wall_seconds"] for c in changes]),
        "updates": int(counts[0]),
        "heap_only_updates": int(counts[1]),
        "table_bytes": int(sizes[0]),
        "index_bytes": int(sizes[1]),
        "reloptions": sizes[2],
    }


def measure(variant: str, opts: argparse.Namespace) -> dict[str, Any]:
    from tests.support.services import throwaway_postgres

    with ExitStack() as stack:
        url = stack.enter_context(throwaway_postgres())
        migrations.upgrade(url, VARIANTS[variant])
        return asyncio.run(_one_variant(url, opts=opts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1_250)
    parser.add_argument("--changes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-save", action="store_true")
    opts = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    for round_ in range(opts.rounds):
        for variant in VARIANTS:
            run = measure(variant, opts)
            runs[variant].append(run)
            print(
                f"round {round_ + 1}/{opts.rounds} {variant}: pg CPU-s per change "
                f"{[c['pg_cpu_seconds'] for c in run['changes']]}",
                flush=True,
            )
    rows, summary = [], {}
    for variant, variant_runs in runs.items():
        last = variant_runs[-1]
        summary[variant] = {
            "revision": VARIANTS[variant],
            "pg_cpu_seconds_per_change_median": S.median(
                [r["pg_cpu_seconds_per_change_median"] for r in variant_runs]
            ),
            "wall_seconds_per_change_median": S.median(
                [r["wall_seconds_per_change_median"] for r in variant_runs]
            ),
            "heap_only_share": round(last["heap_only_updates"] / max(last["updates"], 1), 3),
            "table_mib_after": round(last["table_bytes"] / 2**20, 1),
            "index_mib_after": round(last["index_bytes"] / 2**20, 1),
            "runs": variant_runs,
        }
        s = summary[variant]
        rows.append(
            [
                variant,
                last["reloptions"] or "-",
                s["pg_cpu_seconds_per_change_median"],
                s["wall_seconds_per_change_median"],
                s["heap_only_share"],
                s["table_mib_after"],
                s["index_mib_after"],
            ]
        )
    print()
    print(
        f"{opts.agents} agents, every one confirming {opts.changes} changes in batches of "
        f"{opts.batch}, {opts.rounds} interleaved rounds (medians over runs)"
    )
    headers = ["schema", "agents options", "pg CPU-s/change", "wall s/change"]
    headers += ["heap-only share", "table MiB after", "indexes MiB after"]
    print(S.table(headers, rows))
    ratio = summary["head"]["pg_cpu_seconds_per_change_median"] / max(
        summary["before"]["pg_cpu_seconds_per_change_median"], 1e-9
    )
    print(f"head / before, pg CPU per change: {ratio:.2f}")
    if not opts.no_save:
        result = {
            "agents": opts.agents,
            "batch": opts.batch,
            "changes": opts.changes,
            "rounds": opts.rounds,
            "machine": S.machine(),
            "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "pg_cpu_ratio_head_to_before": round(ratio, 3),
            "variants": summary,
        }
        print("wrote", S.write_results(RESULTS_FILE, result))


if __name__ == "__main__":
    main()
