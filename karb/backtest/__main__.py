"""``python -m karb.backtest CONFIG --days N --out DIR [--seed S] [--data RECORDING]``: a backtest
on the live trading code and virtual time; writes DIR/report.md, DIR/summary.json and plots.
``--compare-rebalance``: the run with and without the config's rebalancing, side by side."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import tempfile
import time
from pathlib import Path

from karb.backtest.report import write_report
from karb.backtest.run import Latency, Options, execution_params, run_backtest
from karb.config import ConfigError, load_config
from karb.exitcodes import ExitCode


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m karb.backtest", description=__doc__)
    p.add_argument("config", help="YAML config (its sim:, venues, markets and actor params)")
    p.add_argument("--days", type=float, default=1.0, help="simulated days (default 1)")
    p.add_argument("--out", type=Path, required=True, help="directory for the report")
    p.add_argument("--report", type=Path, default=None,
                   help="write report.md here instead of DIR/report.md (plots stay in DIR)")
    p.add_argument("--seed", type=int, default=None, help="overrides sim.seed")
    p.add_argument("--data", type=Path, default=None, metavar="RECORDING",
                   help="replay a recording (a recorder directory or one .karb.gz file) instead "
                   "of the synthetic market; the run ends with the recording or after --days")
    p.add_argument("--rtt-ms", type=float, default=Latency.rtt_ms,
                   help=f"network round trip to each venue, ms (default {Latency.rtt_ms:g})")
    p.add_argument("--decision-ms", type=float, default=Latency.decision_ms,
                   help="book receipt to first order written, ms (default: measured tick-to-trade)")
    p.add_argument("--no-reconcile", action="store_true",
                   help="skip continuous reconciliation (faster; live runs it)")
    p.add_argument("--reconcile-s", type=float, default=Options.reconcile_every_s,
                   help="reconciliation interval, s (default %(default)s; live: 5 s, but each sweep "
                   "sums the whole journal, which grows over a long backtest)")
    p.add_argument("--operator-unhalt-s", type=float, default=Options.operator_unhalt_s,
                   metavar="S", help="a halted market is unhalted S after its halt once nothing "
                   "of it is open, as an operator would (default %(default)s; 0: never)")
    p.add_argument("--progress", action="store_true", help="a line on stderr per simulated 6 h")
    p.add_argument("--latency-sweep", nargs="?", const="1,5,10,20,50,100", default=None,
                   metavar="RTT_MS,...", help="re-run at each network round trip (ms; default "
                   "1,5,10,20,50,100) and plot PnL against our latency: DIR/latency_sweep.*")
    p.add_argument("--sweep", default=None, metavar="KEY=V1,V2,...",
                   help="re-run with a config key at each value (sim.x.y or actors.NAME.param): "
                   "DIR/sweep.*")
    p.add_argument("--compare-rebalance", action="store_true",
                   help="run twice in parallel, with the config's rebalance: section and without "
                   "it: DIR/with, DIR/without and the side-by-side report (default DIR/report.md)")
    p.add_argument("--jobs", type=int, default=None, help="parallel processes (default: one per core)")
    p.add_argument("--log-level", default="ERROR")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return ExitCode.CONFIG
    if args.days <= 0:
        print("--days must be positive", file=sys.stderr)
        return ExitCode.CONFIG
    opts = Options(days=args.days, seed=args.seed,
                   latency=Latency(decision_ms=args.decision_ms, rtt_ms=args.rtt_ms),
                   reconcile=not args.no_reconcile, data=args.data,
                   reconcile_every_s=args.reconcile_s, progress=args.progress,
                   operator_unhalt_s=args.operator_unhalt_s or None)
    if args.data is not None and not args.data.exists():
        print(f"--data {args.data}: no such file or directory", file=sys.stderr)
        return ExitCode.CONFIG
    sweeping = args.latency_sweep is not None or args.sweep is not None
    if sweeping and args.compare_rebalance:
        print("--compare-rebalance runs alone: not with --latency-sweep or --sweep", file=sys.stderr)
        return ExitCode.CONFIG
    if sweeping:
        return _sweeps(args, opts)
    command = "python -m karb.backtest " + " ".join(shlex.quote(a) for a in
                                                    (sys.argv[1:] if argv is None else argv))
    latency = {"decision_ms": args.decision_ms, "rtt_ms": args.rtt_ms}
    if args.compare_rebalance:
        from karb.backtest import sweep
        from karb.backtest.compare import compare_rebalance

        both = compare_rebalance(args.config, opts, args.out, args.report, command,
                                 args.jobs or sweep.default_jobs(), {"latency": latency})
        print(json.dumps(both["comparison"], indent=2))
        return ExitCode.OK
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="karb-bt-") as work:
        res, stats = run_backtest(cfg, opts, Path(work))
    stats["total_wall_s"] = round(time.perf_counter() - t0, 3)  # incl. setup, not the plots
    summary = write_report(res, args.out, command=command,
                           max_notional_krw=execution_params(cfg).max_notional_krw,
                           extra={"run_stats": stats, "latency": latency},
                           report_path=args.report)
    print(json.dumps(summary, indent=2))
    return ExitCode.OK


def _sweeps(args: argparse.Namespace, opts: Options) -> int:
    from karb.backtest import sweep

    jobs = args.jobs or sweep.default_jobs()
    try:
        if args.latency_sweep is not None:
            rtts = [float(v) for v in sweep.parse_values(args.latency_sweep)]
            rows = sweep.latency_sweep(args.config, opts, rtts, args.out, jobs)
            print(json.dumps(rows, indent=2))
        if args.sweep is not None:
            key, sep, values = args.sweep.partition("=")
            if not sep or not values:
                print("--sweep wants KEY=V1,V2,...", file=sys.stderr)
                return ExitCode.CONFIG
            rows = sweep.key_sweep(args.config, opts, key, sweep.parse_values(values), args.out, jobs)
            print(json.dumps(rows, indent=2))
    except (ConfigError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return ExitCode.CONFIG
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
