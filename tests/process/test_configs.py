"""The shipped configs: prod refuses to start without keys; paper trades without orders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from karb.exitcodes import ExitCode
from tests.process.pipeline import Venues, pipeline_config, rows
from tests.support import REPO, SupervisorProc, eventually


def test_prod_refuses_to_start_without_keys_in_one_line(workdir: Path) -> None:
    cfg = yaml.safe_load((REPO / "configs" / "prod.yaml").read_text())
    cfg["supervisor"]["run_dir"] = str(workdir / "run")
    path = workdir / "prod.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_ACCESS_KEY", "_SECRET_KEY"))}
    result = subprocess.run([sys.executable, "supervisor.py", str(path)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == ExitCode.CONFIG
    assert result.stderr.count("\n") == 1
    assert "environment variable UPBIT_ACCESS_KEY is not set" in result.stderr
    env["UPBIT_ACCESS_KEY"] = env["UPBIT_SECRET_KEY"] = "k" * 40
    result = subprocess.run([sys.executable, "supervisor.py", str(path)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == ExitCode.CONFIG and "BITHUMB_ACCESS_KEY" in result.stderr
    assert "k" * 40 not in result.stderr


def test_paper_mode_trades_against_the_book_and_sends_no_order(workdir: Path) -> None:
    balances = {"KRW": 5e7, "ETH": 10.0, "XRP": 16_000.0}
    config = pipeline_config(workdir, ["KRW-ETH", "KRW-XRP"], execution={
        "mode": "paper", "paper_balances": {"upbit": balances, "bithumb": balances}})
    with SupervisorProc(config) as sup:
        sup.wait_running(30)
        venues = Venues(sup)
        venues.dislocate("bithumb", "KRW-ETH", 90, 1500)
        done = eventually(lambda: rows(sup, "SELECT * FROM intents WHERE state='DONE'"), 15,
                          what="a paper round trip")
        assert done[0]["pnl_krw"] > 0
        assert venues.orders() == {"upbit": [], "bithumb": []}


def test_dry_run_logs_what_it_would_send(workdir: Path) -> None:
    config = pipeline_config(workdir, ["KRW-ETH"], execution={"mode": "dry_run"})
    with SupervisorProc(config) as sup:
        sup.wait_running(30)
        venues = Venues(sup)
        venues.dislocate("bithumb", "KRW-ETH", 90, 1500)
        eventually(lambda: "DRY RUN would send" in sup.log(), 15, what="a dry-run leg")
        assert venues.orders() == {"upbit": [], "bithumb": []}


def test_an_understated_fee_stops_trading_before_it_starts(workdir: Path) -> None:
    config = pipeline_config(workdir, ["KRW-ETH"])
    cfg = yaml.safe_load(config.read_text())
    cfg["venues"][1]["taker_fee"] = 0.0001  # the simulated Bithumb charges 0.0004
    config.write_text(yaml.safe_dump(cfg))
    with SupervisorProc(config) as sup:
        sup.wait_running(30)
        log = sup.log()
        assert "venues[bithumb].taker_fee is 0.0001 but the account pays 0.0004" in log
        assert "CRITICAL" in log
        Venues(sup).dislocate("bithumb", "KRW-ETH", 90, 1500)
        eventually(lambda: rows(sup, "SELECT 1 FROM intents WHERE state='REJECTED' "
                                "AND reason='kill switch engaged'"), 15, what="intents refused")
        assert not rows(sup, "SELECT 1 FROM intents WHERE state='DONE'")


def test_kill_file_is_reported_and_obeyed(workdir: Path) -> None:
    with SupervisorProc(pipeline_config(workdir, ["KRW-ETH"])) as sup:
        sup.wait_running(30)
        (sup.run_dir / "KILL").touch()
        eventually(lambda: "kill switch engaged: no new intents" in sup.log(), 10)
        eventually(lambda: sup.actors()["execution"]["extra"].get("kill_switch") == 1.0, 10)
        Venues(sup).dislocate("bithumb", "KRW-ETH", 90, 1500)
        eventually(lambda: rows(sup, "SELECT 1 FROM intents WHERE reason='kill switch engaged'"),
                   15, what="an intent refused")
        (sup.run_dir / "KILL").unlink()
        eventually(lambda: "kill switch released: trading" in sup.log(), 10)
