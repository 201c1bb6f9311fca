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

from service.core.settings import Settings

if TYPE_CHECKING:
    from service.core.runtime import Runtime

Handler = Callable[[argparse.Namespace, Settings], int]


@contextmanager
def _runtime(settings: Settings) -> Iterator[Runtime]:
    """A runtime for one command: no background threads, closed on the way out."""
    from service.core.runtime import Runtime

    runtime = Runtime(settings.model_copy(update={"run_background": False}))
    try:
        yield runtime
    finally:
        runtime.stop()


def settings_source(env_file: str) -> str:
    """Where the settings came from: names and a file path, never a value (they hold secrets)."""
    from dotenv import dotenv_values

    prefix = "BANDITLOOP_"
    from_env = sorted(k.removeprefix(prefix) for k in os.environ if k.startswith(prefix))
    path = Path(env_file)
    from_file: list[str] = []
    if path.is_file():
        names = {k.upper() for k in dotenv_values(path) if k.upper().startswith(prefix)}
        from_file = sorted(n.removeprefix(prefix) for n in names - {prefix + n for n in from_env})
    parts = [f"environment: {', '.join(from_env)}" if from_env else "environment: none"]
    if path.is_file():
        shown = ", ".join(from_file) if from_file else "nothing new"
        parts.append(f"{path.resolve()}: {shown}")
    else:
        parts.append(f"no {path} file")
    return f"settings ({prefix}*) from {'; '.join(parts)}; defaults for the rest"


def cmd_migrate(_args: argparse.Namespace, settings: Settings) -> int:
    from service.core import migrations

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
    from service.core import migrations

    migrations.upgrade(settings.database_url)
    if args.demo:
        from service.core.demo import curl_lines, ensure_demo

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
    from service.core.gunicorn_conf import ServeApplication

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
    from service.core.errors import NotFound
    from service.experiments import repository as experiments_repo
    from service.measuring.rebuild import rebuild_stats

    with _runtime(settings) as runtime:
        experiment_id = None
        if args.experiment:
            with runtime.unit_of_work() as session:
                experiment = experiments_repo.get_by_key(session, key=args.experiment)
                if experiment is None or experiment.id is None:
                    raise NotFound(f"unknown experiment {args.experiment!r}", field="experiment")
                experiment_id = experiment.id
        with runtime.unit_of_work() as session:
            counts = rebuild_stats(session, experiment_id=experiment_id)
    which = args.experiment or "every experiment"
    print(
        f"{which}: rebuilt statistics from {counts['decisions']} decisions "
        f"and {counts['events']} events"
    )
    return 0


def cmd_purge(_args: argparse.Namespace, settings: Settings) -> int:
    from service.admin.service import purge_raw_payloads

    with _runtime(settings) as runtime:
        with runtime.unit_of_work() as session:
            deleted = purge_raw_payloads(session, retention_days=settings.raw_retention_days)
    print(f"deleted {deleted} raw payloads older than {settings.raw_retention_days} days")
    return 0


def cmd_loop(args: argparse.Namespace, settings: Settings) -> int:
    from service.core.errors import Conflict
    from service.loop.scheduler import running_keys

    if not settings.llm_configured:
        print(
            "note: no LLM configured (BANDITLOOP_LLM_BASE_URL and BANDITLOOP_LLM_MODEL): "
            "statistical pass only, no proposals",
            file=sys.stderr,
        )
    with _runtime(settings) as runtime:
        if args.all:
            with runtime.unit_of_work() as session:
                keys = running_keys(session)
        else:
            keys = [args.experiment]
        if not keys:
            print("no running experiment")
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


SIMULATION_EXTRA_MISSING = (
    "banditloop simulate needs the simulation extra (matplotlib, for the plots): "
    "pip install 'banditloop[simulation]'"
)


def cmd_simulate(args: argparse.Namespace, _settings: Settings) -> int:
    # The simulator is not product: its package ships, its plotting library is an extra.
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        print(f"error: {SIMULATION_EXTRA_MISSING}", file=sys.stderr)
        return 2

    from simulation.loop import SimulationConfig, compare, plot, table

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
    from simulation.audience import pinned_scenarios
    from simulation.regret import SimulationSettings
    from simulation.regret.summary import format_table, plot, policies_for, run_many, summarise

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

    from service.core.errors import NotFound
    from service.experiments import repository as experiments_repo
    from service.reporting.evaluation import evaluate_experiment
    from service.reporting.evaluation.table import format_evaluation

    with _runtime(settings) as runtime:
        with runtime.unit_of_work() as session:
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


SIMULATE_HELP = """\
Without --loop: the pinned bandit scenarios on the real engine, each policy against the
same simulated audience (seeds 0..N-1), with a PNG of cumulative regret per scenario.

scenarios (--scenario NAME, or all):
  stationary         five subject lines, clicks 1.2-4.0%, nothing changes for a week
  stationary_many    eight subject lines, several close to the best
  best_arm_swap      the best arm fatigues at 72 h while another rises
  guardrail_trap     the click winner triples unsubscribes: it must be suspended
  arms_added_midrun  two arms (one the new best) join at 48 h
  segments           engaged and lapsed readers with different winners
  conversions        conversions with long delays (median 20 h) over two weeks

columns of the scenario table:
  regret   successes lost against always serving the best arm (mean over seeds)
  p90      90th percentile of that regret over seeds
  /unif    regret divided by the uniform policy's regret on the same audience (<1 is better)
  p90/u    90th percentile of that ratio
  best     share of sends that went to the best arm
  vs even  successes gained over an even split of the same audience
  unsub    unsubscribes caused (the guardrail scenario's cost)
  events   suspensions (arm, runs, mean hour and exposures) and retirements

With --loop: the marketing loop run with and without its learnings over --generations; the
table gives, per generation, the true click rate of the best live arm, the mean true rate of
that generation's sends (served), the active learnings, and the gain of learning.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="banditloop",
        description=__doc__,
        epilog="Settings come from BANDITLOOP_* environment variables, then the --env-file "
        "(default: .env in the current folder), then the defaults; every command but "
        "simulate says on stderr which of these it used.",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (default: info; debug also shows Alembic and HTTP client lines)",
    )
    parser.add_argument(
        "--env-file",
        default=os.environ.get("BANDITLOOP_ENV_FILE", ".env"),
        help="settings file read after the environment (default: $BANDITLOOP_ENV_FILE or "
        ".env in the current folder; a missing file is skipped)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    _add_serve_and_migrate(sub)
    _add_maintenance(sub)
    _add_simulate(sub)
    _add_evaluate(sub)
    return parser


def _add_serve_and_migrate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`serve` and `migrate`."""
    serve = sub.add_parser("serve", help="apply migrations and run the HTTP service")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)"
    )
    serve.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("BANDITLOOP_PORT") or 8000),
        help="port to listen on (default: $BANDITLOOP_PORT or 8000)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (more than 1 runs gunicorn and needs PostgreSQL)",
    )
    serve.add_argument("--demo", action="store_true", help="create the demo experiment and key")
    serve.set_defaults(handler=cmd_serve)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(handler=cmd_migrate)


def _add_maintenance(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`keys`, `stats rebuild`, `purge` and `loop run`: the operator's one-off commands."""
    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument(
        "--scopes", required=True, help="comma-separated: decide, ingest, review, admin"
    )
    keys_sub.add_parser("list", help="list keys (prefixes only)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id", type=int, help="the key's id, as `keys list` shows")
    keys.set_defaults(handler=cmd_keys)
    stats = sub.add_parser("stats", help="statistics maintenance")
    stats_sub = stats.add_subparsers(dest="stats_command", required=True)
    rebuild = stats_sub.add_parser("rebuild", help="recompute statistics from decisions and events")
    _experiment_or_all(rebuild, "rebuild every experiment's statistics")
    stats.set_defaults(handler=cmd_stats)
    sub.add_parser("purge", help="delete raw payloads past the retention period").set_defaults(
        handler=cmd_purge
    )
    loop = sub.add_parser("loop", help="the marketing loop")
    loop_sub = loop.add_subparsers(dest="loop_command", required=True)
    loop_run = loop_sub.add_parser("run", help="run the loop now")
    _experiment_or_all(loop_run, "run every running experiment's loop")
    loop.set_defaults(handler=cmd_loop)


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`simulate`: the pinned scenarios and the loop comparison on the real engine."""
    simulate = sub.add_parser(
        "simulate",
        help="simulations on the real engine",
        description=SIMULATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simulate.add_argument(
        "--loop", action="store_true", help="the loop with and without learnings, compared"
    )
    simulate.add_argument(
        "--generations", type=int, default=8, help="--loop: loop runs to simulate (default 8)"
    )
    simulate.add_argument(
        "--sends", type=int, default=8000, help="--loop: sends per generation (default 8000)"
    )
    simulate.add_argument("--seed", type=int, default=7, help="--loop: first seed (default 7)")
    simulate.add_argument(
        "--repeats", type=int, default=3, help="--loop: seeds to average over (default 3)"
    )
    simulate.add_argument(
        "--plot", default="loop-simulation.png", help="--loop: where the PNG goes"
    )
    simulate.add_argument(
        "--scenario", default="all", help="a pinned scenario's name (listed above), or all"
    )
    simulate.add_argument("--seeds", type=int, default=1, help="runs seeds 0..N-1 (default 1)")
    simulate.add_argument("--out", default="simulation", help="directory for the PNG plots")
    simulate.add_argument(
        "--policies",
        nargs="+",
        choices=["uniform", "epsilon-greedy", "thompson", "ours", "ours-naive"],
        default=None,
        help="default: uniform, epsilon-greedy, thompson, ours (+ ours-naive where delays matter)",
    )
    simulate.add_argument(
        "--hours", type=float, default=None, help="simulated hours (default: the scenario's)"
    )
    simulate.add_argument(
        "--refresh-hours",
        type=float,
        default=1.0,
        help="simulated hours between policy refreshes (default 1)",
    )
    simulate.set_defaults(handler=cmd_simulate)


def _add_evaluate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`evaluate`: the evaluation the report embeds, from the command line."""
    evaluate = sub.add_parser(
        "evaluate", help="lift over an even split and off-policy estimates from the decision log"
    )
    evaluate.add_argument("--experiment", required=True, help="the experiment's key")
    evaluate.add_argument("--arm", type=int, default=None, help="also evaluate always serving it")
    evaluate.add_argument("--json", action="store_true", help="print the JSON the report embeds")
    evaluate.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    evaluate.set_defaults(handler=cmd_evaluate)


def _experiment_or_all(parser: argparse.ArgumentParser, all_help: str) -> None:
    """`--experiment KEY` or an explicit `--all`: never every experiment by omission."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", metavar="KEY", help="only this experiment (its key)")
    which.add_argument("--all", action="store_true", help=all_help)


def main(argv: Sequence[str] | None = None) -> int:
    from service.core.errors import DomainError

    args = build_parser().parse_args(argv)
    if args.command != "serve":
        # A one-off command's counters die with it (what it changes shows through the state
        # gauges read from the database); in a container started with the server's
        # PROMETHEUS_MULTIPROC_DIR, whose folder only `serve` creates, prometheus-client
        # would fail at import. Unset before anything imports it.
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    # One line per HTTP call, or Alembic's two INFO lines on every command, drown the output.
    for chatty in ("httpx", "httpx2", "openai", "alembic"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        settings = Settings(_env_file=args.env_file)
        if args.command != "simulate":  # the simulator reads no settings
            print(settings_source(args.env_file), file=sys.stderr)
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
