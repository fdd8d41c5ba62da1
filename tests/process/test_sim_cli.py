"""The simulator as a program: ``python -m karb.sim`` and the ``sim`` actor."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

from tests.support import REPO, SupervisorProc, eventually, write_config


def test_python_m_karb_sim_prints_one_line_per_venue_and_stops_on_ctrl_c(workdir: Path) -> None:
    config = workdir / "sim.yaml"
    config.write_text(yaml.safe_dump({"markets": ["KRW-BTC"], "sim": {"upbit": {"port": 0},
                                      "bithumb": {"port": 0}},
                                      "actors": [{"name": "sim", "kind": "sim"}]}))
    proc = subprocess.Popen([sys.executable, "-m", "karb.sim", str(config)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline().strip() for _ in range(2)]  # type: ignore[union-attr]
        assert [line.split()[:2] for line in lines] == [["karb.sim", "upbit"], ["karb.sim", "bithumb"]]
        rest = dict(part.split("=", 1) for part in lines[0].split()[2:])
        with urllib.request.urlopen(rest["rest"] + "/v1/market/all", timeout=5) as resp:
            assert json.load(resp)[0]["market"] == "KRW-BTC"
        assert rest["ws"].endswith("/websocket/v1")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sim_actor_runs_under_the_supervisor(workdir: Path) -> None:
    config = write_config(workdir, [{"name": "sim", "kind": "sim"}], markets=["KRW-BTC"],
                          sim={"upbit": {"port": 0}, "bithumb": {"port": 0}})
    with SupervisorProc(config) as sup:
        sup.wait_running()
        urls = eventually(lambda: json.loads((sup.run_dir / "sim.json").read_text()), 10)
        with urllib.request.urlopen(urls["bithumb"]["rest"] + "/public/ticker/BTC_KRW", timeout=5) as r:
            assert json.load(r)["status"] == "0000"
        assert "karb.sim upbit rest=http://127.0.0.1:" in sup.log()
