"""tools/chaos.py runs a copy of a sim config: own run dir and ports, explicit starting balances
(the audit needs them exactly) and restart limits a chaos run cannot reach."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from karb.config import load_config
from tests.support import REPO

sys.path.insert(0, str(REPO / "tools"))

from chaos_pipeline import MAX_RESTARTS, PERIOD_S, chaos_config


def test_the_copy_moves_run_dir_and_ports_and_makes_balances_explicit(tmp_path: Path) -> None:
    cfg = load_config(chaos_config(REPO / "configs" / "sim.yaml", tmp_path, seed=3))
    original = load_config(REPO / "configs" / "sim.yaml")
    assert Path(cfg.run_dir) == tmp_path / "run"
    assert cfg.supervisor.status_port not in (None, original.supervisor.status_port)
    assert cfg.supervisor.max_restarts >= MAX_RESTARTS and cfg.supervisor.period_s <= PERIOD_S
    assert cfg.sim is not None and cfg.sim.seed == 3
    for venue in cfg.venues:
        port = (cfg.sim.upbit if venue.name == "upbit" else cfg.sim.bithumb).port
        assert venue.rest_url == f"http://127.0.0.1:{port}" and str(port) in venue.ws_url
    assert cfg.sim.upbit.port != cfg.sim.bithumb.port
    (account,) = cfg.sim.accounts
    assert account.balances["KRW"] > 0
    assert {m.split("-")[1] for m in cfg.markets} <= set(account.balances)
    assert cfg.markets == original.markets
    assert [a.name for a in cfg.actors] == [a.name for a in original.actors]


def test_a_config_without_a_simulator_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no sim: section"):
        chaos_config(REPO / "configs" / "prod.yaml", tmp_path, seed=1)
