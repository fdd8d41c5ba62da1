"""Variants of one backtest, run in parallel processes (one per core): ``--latency-sweep`` (the
same market and seed with our network round trip at several values: what a millisecond is
worth) and ``--sweep KEY=V1,V2,...`` (a config key at several values).

KEY is a dotted path into the YAML: ``sim.competitors.latency_ms``, ``sim.dislocation.rate_per_min``,
or ``actors.<actor name>.<param>`` for an actor's params (``actors.strategy.min_edge_bps``).
Each variant is a config file written beside the results and loaded (validated) like any other.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import yaml

from karb.backtest.results import summarise
from karb.backtest.run import Latency, Options, run_backtest
from karb.config import ConfigError, load_config

T = TypeVar("T")
KEYS = ("intents", "round_trips", "order_success_rate", "pnl_krw", "fees_krw",
        "max_drawdown_krw", "hedges", "halts", "inventory_blocked_s", "crashes", "speedup",
        "rebalancing_cost_krw", "transfers")


def parse_values(text: str) -> list[Any]:
    return [yaml.safe_load(v) for v in text.split(",") if v.strip()]


def set_key(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` in a raw config mapping; ``actors.<name>.<param>`` sets a param."""
    parts = key.split(".")
    node: Any = raw
    if parts[0] == "actors" and len(parts) >= 3:
        actor = next((a for a in raw.get("actors", []) if a.get("name") == parts[1]), None)
        if actor is None:
            raise ConfigError(f"--sweep {key}: no actor named {parts[1]!r} in the config")
        node = actor.setdefault("params", {})
        parts = parts[2:]
    for part in parts[:-1]:
        if not isinstance(node, dict):
            raise ConfigError(f"--sweep {key}: {part!r} is not a section")
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def variant_config(base: Path, key: str, value: Any, where: Path) -> Path:
    raw = yaml.safe_load(base.read_text(encoding="utf-8"))
    set_key(raw, key, value)
    path = where / f"config-{key}={value}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    load_config(path)  # one clear line now, not in a worker
    return path


def _one(config: str, opts: Options) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="karb-sweep-") as work:
        res, _ = run_backtest(load_config(config), opts, Path(work))
    summary = summarise(res)
    return {k: summary[k] for k in KEYS}


def parallel(fn: Callable[..., T], calls: list[tuple[Any, ...]], jobs: int) -> list[T]:
    """``fn(*args)`` for each args in ``calls``, in up to ``jobs`` processes; results in order.
    ``fn`` is a module-level function and its arguments and result pickle (no live objects)."""
    with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(calls)))) as pool:
        futures = [pool.submit(fn, *args) for args in calls]
        return [f.result() for f in futures]


def run_variants(variants: list[tuple[str, str, Options]], jobs: int) -> list[dict[str, Any]]:
    """(label, config path, options) each → its summary figures, in order."""
    rows = parallel(_one, [(config, opts) for _, config, opts in variants], jobs)
    return [{"variant": label, **row} for (label, _, _), row in zip(variants, rows)]


def latency_sweep(config: str, opts: Options, rtts_ms: list[float], out: Path,
                  jobs: int) -> list[dict[str, Any]]:
    variants = [(f"rtt {rtt:g} ms", config, replace(opts, latency=Latency(
        decision_ms=opts.latency.decision_ms, rtt_ms=rtt))) for rtt in rtts_ms]
    rows = run_variants(variants, jobs)
    for row, rtt in zip(rows, rtts_ms):
        row["rtt_ms"] = rtt
        row["latency_ms"] = rtt + opts.latency.decision_ms  # book at the venue → our order there
    _write(out, "latency_sweep", rows, f"decision {opts.latency.decision_ms:g} ms + rtt")
    _plot_latency(rows, out / "latency_sweep.png")
    return rows


def key_sweep(config: str, opts: Options, key: str, values: list[Any], out: Path,
              jobs: int) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    variants = [(f"{key}={v}", str(variant_config(Path(config), key, v, out)), opts) for v in values]
    rows = run_variants(variants, jobs)
    _write(out, "sweep", rows, key)
    return rows


def _write(out: Path, name: str, rows: list[dict[str, Any]], about: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    cols = ["variant", *KEYS]
    lines = [f"# {name.replace('_', ' ')}: {about}", "", "| " + " | ".join(cols) + " |",
             "|" + "---|" * len(cols)]
    for row in rows:
        cells = [row["variant"]] + [_fmt(row[k]) for k in KEYS]
        lines.append("| " + " | ".join(cells) + " |")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return "n/a" if v is None else str(v)


def _plot_latency(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["latency_ms"] for r in rows], [r["pnl_krw"] for r in rows], marker="o")
    ax.set_xlabel("our latency, book at the venue → our order there (ms)")
    ax.set_ylabel("PnL net of fees (KRW)")
    ax.set_title("What a millisecond is worth")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
