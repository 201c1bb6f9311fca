"""The `banditloop` command line."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from service.settings import Settings

if TYPE_CHECKING:
    from service.runtime import Runtime

Handler = Callable[[argparse.Namespace, Settings], int]


@contextmanager
def _runtime(settings: Settings) -> Iterator[Runtime]:
    """A runtime for one command: no background threads, closed on the way out."""
    from service.runtime import Runtime

    runtime = Runtime(settings.model_copy(update={"run_background": False}))
    try:
        yield runtime
    finally:
        runtime.stop()


def cmd_migrate(_args: argparse.Namespace, settings: Settings) -> int:
    from service import migrations

    migrations.upgrade(settings.database_url)
    print(f"database at {migrations.head_revision(settings.database_url)}")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    if settings.is_sqlite and args.workers > 1:
        print(
            "refusing --workers > 1 on SQLite: SQLite has one writer, and the decision log and "
            "keyed-decision cache live in one process. Use PostgreSQL "
            "(BANDITLOOP_DATABASE_URL=postgresql+psycopg://...) for more workers.",
            file=sys.stderr,
        )
        return 2
    if args.workers > 1:
        _metrics_directory()
    from service import migrations

    migrations.upgrade(settings.database_url)
    if args.demo:
        from service.demo import curl_lines, ensure_demo

        with _runtime(settings) as runtime:
            info = ensure_demo(runtime)
        base = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
        print(f"\nbanditloop demo: experiment {info.experiment_key!r} is running at {base}")
        if info.admin_key:
            print(f"admin API key (shown once): {info.admin_key}\n")
            print(curl_lines(base, info.admin_key, info.experiment_key))
        else:
            print("an API key exists already; create another with `banditloop keys create`")
        print(flush=True)
    if args.workers > 1:
        return _serve_gunicorn(args)
    import uvicorn

    uvicorn.run("service.main:app", host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _serve_gunicorn(args: argparse.Namespace) -> int:
    from service.gunicorn_conf import ServeApplication

    ServeApplication(host=args.host, port=args.port, workers=args.workers).run()
    return 0


def _metrics_directory() -> None:
    """Metrics from several workers: prometheus-client's multiprocess mode, with its directory
    cleared at start so counters of dead processes do not linger. Set before anything imports
    prometheus-client, which picks its value store at import."""
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.path.join(
        tempfile.gettempdir(), "banditloop-metrics"
    )
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    with _runtime(settings) as runtime:
        if args.keys_command == "create":
            row, raw = runtime.api_keys.create(name=args.name, scopes=args.scopes)
            print(f"created key {row.id} ({row.scopes}): {raw}")
            print("store it now: only its digest is kept")
        elif args.keys_command == "list":
            for row in runtime.api_keys.list():
                state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
                print(f"{row.id:>4}  {row.prefix}…  {row.scopes:<20} {state:<18} {row.name}")
        else:
            row = runtime.api_keys.revoke(args.key_id)
            print(f"revoked key {row.id} ({row.name})")
    return 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    from service.ingest.rebuild import rebuild_stats

    with _runtime(settings) as runtime:
        counts = rebuild_stats(runtime.engine, experiment_id=args.experiment_id)
    print(f"rebuilt statistics from {counts['decisions']} decisions and {counts['events']} events")
    return 0


def cmd_purge(_args: argparse.Namespace, settings: Settings) -> int:
    from service.admin import purge_raw_payloads

    with _runtime(settings) as runtime:
        deleted = purge_raw_payloads(runtime.engine, retention_days=settings.raw_retention_days)
    print(f"deleted {deleted} raw payloads older than {settings.raw_retention_days} days")
    return 0


def cmd_loop(args: argparse.Namespace, settings: Settings) -> int:
    from service.errors import Conflict
    from service.loop.scheduler import running_keys

    with _runtime(settings) as runtime:
        keys = [args.experiment] if args.experiment else running_keys(runtime.engine)
        for key in keys:
            try:
                run = runtime.loop.run(key, trigger="cli")
            except Conflict as exc:
                print(f"{key}: skipped: {exc.message}")
                continue
            print(f"{key}: run {run.id} {run.status}: {run.summary}")
            if run.error:
                print(f"  error: {run.error}")
    return 0


def cmd_simulate(args: argparse.Namespace, _settings: Settings) -> int:

    from service.loop.simulate import SimulationConfig, compare, plot, table

    if not args.loop:
        return _simulate_scenarios(args)
    config = SimulationConfig(
        generations=args.generations, sends_per_generation=args.sends, seed=args.seed
    )
    results = compare(config, repeats=args.repeats)
    print(table(results))
    print(f"plot: {plot(results, Path(args.plot))}")
    return 0


def _simulate_scenarios(args: argparse.Namespace) -> int:

    from bandits.audience import pinned_scenarios
    from service.simulate import SimulationSettings
    from service.simulate.summary import format_table, plot, policies_for, run_many, summarise

    scenarios = pinned_scenarios()
    names = list(scenarios) if args.scenario == "all" else [args.scenario]
    unknown = [n for n in names if n not in scenarios]
    if unknown:
        print(f"unknown scenario {unknown[0]!r}; one of: all, {', '.join(scenarios)}")
        return 2
    settings = SimulationSettings(refresh_hours=args.refresh_hours, hours=args.hours)
    for name in names:
        scenario = scenarios[name]
        policies = args.policies or policies_for(scenario)
        results = run_many(scenario, policies, range(args.seeds), settings)
        print(format_table(summarise(results)))
        for path in plot(results, Path(args.out)):
            print(f"  plot: {path}")
        print(flush=True)
    return 0


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    import json

    import numpy as np

    from service.db import session_scope
    from service.errors import NotFound
    from service.evaluation import evaluate_experiment
    from service.evaluation.table import format_evaluation
    from service.repositories import experiments as experiments_repo

    with _runtime(settings) as runtime:
        with session_scope(runtime.engine) as session:
            experiment = experiments_repo.get_by_key(session, key=args.experiment)
            if experiment is None or experiment.id is None:
                raise NotFound(f"unknown experiment {args.experiment!r}", field="experiment")
            result = evaluate_experiment(
                session,
                experiment_id=experiment.id,
                rng=np.random.default_rng(args.seed),
                arm_id=args.arm,
            )
    print(json.dumps(result, indent=2) if args.json else format_evaluation(args.experiment, result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="banditloop", description=__doc__)
    parser.add_argument("--log-level", default="info")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="apply migrations and run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--demo", action="store_true", help="create the demo experiment and key")
    serve.set_defaults(handler=cmd_serve)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(handler=cmd_migrate)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", required=True, help="comma-separated: decide,ingest,admin")
    keys_sub.add_parser("list")
    revoke = keys_sub.add_parser("revoke")
    revoke.add_argument("key_id", type=int)
    keys.set_defaults(handler=cmd_keys)

    stats = sub.add_parser("stats", help="statistics maintenance")
    stats_sub = stats.add_subparsers(dest="stats_command", required=True)
    rebuild = stats_sub.add_parser("rebuild", help="recompute statistics from decisions and events")
    rebuild.add_argument("--experiment-id", type=int, default=None)
    stats.set_defaults(handler=cmd_stats)

    sub.add_parser("purge", help="delete raw payloads past the retention period").set_defaults(
        handler=cmd_purge
    )

    loop = sub.add_parser("loop", help="the marketing loop")
    loop_sub = loop.add_subparsers(dest="loop_command", required=True)
    loop_run = loop_sub.add_parser("run", help="run the loop now (every running experiment)")
    loop_run.add_argument("--experiment", default=None, help="only this experiment's key")
    loop.set_defaults(handler=cmd_loop)

    simulate = sub.add_parser("simulate", help="simulations on the real engine")
    simulate.add_argument(
        "--loop", action="store_true", help="the loop with and without learnings, compared"
    )
    simulate.add_argument("--generations", type=int, default=8)
    simulate.add_argument("--sends", type=int, default=8000, help="sends per generation")
    simulate.add_argument("--seed", type=int, default=7)
    simulate.add_argument("--repeats", type=int, default=3, help="seeds to average over")
    simulate.add_argument("--plot", default="loop-simulation.png", help="where the PNG goes")
    # Without --loop: the pinned bandit scenarios on the real engine, against the baselines.
    simulate.add_argument("--scenario", default="all", help="a pinned scenario's name, or all")
    simulate.add_argument("--seeds", type=int, default=1, help="runs seeds 0..N-1")
    simulate.add_argument("--out", default="simulation", help="directory for the PNG plots")
    simulate.add_argument(
        "--policies",
        nargs="+",
        choices=["uniform", "epsilon-greedy", "thompson", "ours", "ours-naive"],
        default=None,
        help="default: uniform, epsilon-greedy, thompson, ours (+ ours-naive where delays matter)",
    )
    simulate.add_argument("--hours", type=float, default=None, help="default: the horizon")
    simulate.add_argument("--refresh-hours", type=float, default=1.0, help="policy refresh")
    simulate.set_defaults(handler=cmd_simulate)

    evaluate = sub.add_parser(
        "evaluate", help="lift over an even split and off-policy estimates from the decision log"
    )
    evaluate.add_argument("--experiment", required=True, help="the experiment's key")
    evaluate.add_argument("--arm", type=int, default=None, help="also evaluate always serving it")
    evaluate.add_argument("--json", action="store_true", help="print the JSON the report embeds")
    evaluate.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    evaluate.set_defaults(handler=cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from service.errors import DomainError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    for chatty in ("httpx", "httpx2", "openai"):  # one line per HTTP call drowns the output
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        settings = Settings()
        handler: Handler = args.handler
        return handler(args, settings)
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
