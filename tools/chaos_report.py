"""What ``tools/chaos.py`` prints: one JSON object, or one line per figure."""

from __future__ import annotations

from collections import Counter
from typing import Any

from chaos_audit import CHECKS, Audit


def report(run: dict[str, Any], result: Audit, drained: tuple[bool, float],
           exit_code: int | None) -> dict[str, Any]:
    """``run``: what the chaos did (``Chaos.stats()``); ``result``: what the audit found."""
    alerts = run.pop("alerts")
    return {
        **run,
        "alerts_by_level": dict(Counter(level for level, _, _ in alerts)),
        "critical_alerts": [f"{market or '-'}: {text}" for level, market, text in alerts
                            if level == "critical"],
        "intents_by_state": result.intents_by_state, "legs_by_state": result.legs_by_state,
        **{check: len(result.problems[check]) for check in CHECKS},
        "details": {check: lines for check, lines in result.problems.items() if lines},
        "halts": result.halts, "halted_exposure": result.halted_exposure,
        "exposure_s": result.exposure_summary(), "open_exposure": result.open_exposure,
        "longest_exposures": result.longest_exposures(),
        "quiesced": drained[0], "quiesce_s": round(drained[1], 1),
        "supervisor_exit": exit_code,
    }


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def _sec(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _details(lines: list[str], limit: int, prefix: str = "") -> None:
    for line in lines[:limit]:
        print(f"  {prefix}{line}")
    if len(lines) > limit:
        print(f"  ... {len(lines) - limit} more")


def print_report(out: dict[str, Any], limit: int = 20) -> None:
    print(f"kills: {out['kills']} ({_counts(out['kills_by_actor'])}; "
          f"aimed but over before it was due: {out['aimed_missed']})")
    crashes = out["crashes_by_actor"]
    print(f"crashes (restarts no kill explains): {sum(crashes.values())} ({_counts(crashes)})")
    unavailable = out["faults_unavailable"]
    print(f"faults: {out['faults']} ({_counts(out['faults_by_kind'])})"
          + (f"; not available (404): {', '.join(unavailable)}" if unavailable else "")
          + (f"; refused: {_counts(out['faults_refused'])}" if out["faults_refused"] else ""))
    print(f"dislocations: {out['dislocations']}; intents sent: {out['intents_sent']}")
    print(f"intents: {_counts(out['intents_by_state'])}")
    print(f"legs: {_counts(out['legs_by_state'])}")
    for check in CHECKS:
        print(f"{check}: {out[check]}")
        _details(out["details"].get(check, []), limit)
    print(f"halts: {len(out['halts'])}")
    _details([f"{market}: {reason}" for market, reason in sorted(out["halts"].items())], limit)
    _details(out["halted_exposure"], limit, "held in a halted market: ")
    print(f"alerts: {_counts(out['alerts_by_level'])}")
    _details(out["critical_alerts"], limit, "critical: ")
    ex = out["exposure_s"]
    print(f"one-sided exposure: p50 {_sec(ex['p50'])}, p99 {_sec(ex['p99'])}, max {_sec(ex['max'])} "
          f"({ex['intents']} intents that traded, {ex['open']} never flat)")
    _details(out["longest_exposures"], limit, "longest: ")
    _details(out["open_exposure"], limit, "never flat: ")
    print(f"quiesce: {'drained' if out['quiesced'] else 'NOT drained'} in {out['quiesce_s']} s")
    code = out["supervisor_exit"]
    print(f"supervisor exit: {code if code is not None else 'did not stop (killed)'}")
