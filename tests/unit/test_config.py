from __future__ import annotations

from pathlib import Path

import pytest

from karb.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_and_freezing(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "actors:\n  - {name: a, kind: probe_source}\n"))
    assert cfg.supervisor.heartbeat_interval_ms == 200
    assert cfg.bus.transport == "ipc"
    assert cfg.actor("a").restart == "permanent"
    with pytest.raises(AttributeError):
        cfg.supervisor.max_restarts = 9  # type: ignore[misc]


def test_nested_unknown_key_lists_the_allowed_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "bus: {transprt: tcp}\nactors:\n  - {name: a, kind: x}\n"))
    message = str(err.value)
    assert "bus.transprt: unknown key (allowed here: transport, tcp_host" in message
    assert "\n" not in message


def test_duplicate_actor_names_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="actors lists 'a' twice"):
        load_config(write(tmp_path, "actors:\n  - {name: a, kind: x}\n  - {name: a, kind: y}\n"))


def test_path_key_is_reserved(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="path: unknown key"):
        load_config(write(tmp_path, "path: x\nactors:\n  - {name: a, kind: x}\n"))


def test_shipped_configs_load() -> None:
    root = Path(__file__).resolve().parents[2] / "configs"
    for path in sorted(root.glob("*.yaml")):
        assert load_config(path).actors


def test_restart_intensity_keys_are_named_in_errors(tmp_path: Path) -> None:
    actors = "actors:\n  - {name: a, kind: x}\n  - {name: b, kind: x}\n"
    cfg = load_config(write(tmp_path, actors))
    assert cfg.restart_backstop == cfg.supervisor.max_restarts + 2
    with pytest.raises(ConfigError, match=r"supervisor\.max_restarts: must be greater than 0"):
        load_config(write(tmp_path, "supervisor: {max_restarts: 0}\n" + actors))
    with pytest.raises(ConfigError, match=r"supervisor\.period_s: must be greater than 0"):
        load_config(write(tmp_path, "supervisor: {period_s: -1}\n" + actors))
    with pytest.raises(ConfigError, match=r"supervisor\.max_restarts_total: 1 is less than the 2 "):
        load_config(write(tmp_path, "supervisor: {max_restarts_total: 1}\n" + actors))
    assert load_config(write(tmp_path, "supervisor: {max_restarts_total: 2}\n" + actors)
                       ).restart_backstop == 2
