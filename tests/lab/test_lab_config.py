"""Config loading, defaults and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlswatch.lab import (
    BLOCK_METHODS,
    AddressPlan,
    LabConfig,
    LabConfigError,
    default_targets_path,
    load_config,
    load_targets,
)


def test_packaged_target_list_matches_the_shared_data() -> None:
    targets = load_targets(default_targets_path())
    assert len(targets) == 37
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "kz_targets_2019.txt"
    if shared.is_file():
        assert targets == load_targets(shared)


def test_defaults_block_only_lab_names() -> None:
    cfg = LabConfig()
    assert set(cfg.blockers) == set(BLOCK_METHODS)
    assert not set(cfg.blocked()) & set(cfg.targets())


def test_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "lab.toml"
    toml.write_text(
        'seed = 3\nnow = "2019-08-01T12:00:00Z"\nport = 8443\n[blockers]\nreset = ["A.test"]\n'
    )
    cfg = load_config(toml)
    assert (cfg.seed, cfg.port, cfg.blockers) == (3, 8443, {"reset": ("a.test",)})
    js = tmp_path / "lab.json"
    js.write_text('{"untargeted": ["x.test"], "sslsplit": "off", "targets_file": "t.txt"}')
    cfg = load_config(js)
    assert cfg.untargeted == ("x.test",) and cfg.targets_file == tmp_path / "t.txt"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("bogus = 1\n", "unknown key 'bogus'"),
        ("port = 'x'\n", "port: expected an integer"),
        ("port = 70000\n", "port: not a port"),
        ("address_prefix = '10.0'\n", "address_prefix"),
        ("[blockers]\nteleport = ['a.test']\n", "blockers.teleport"),
        ("now = '2019-08-01T12:00:00'\n", "now: must carry a timezone"),
        ("seed = \n", "not valid toml"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(text)
    with pytest.raises(LabConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path)) and fragment in message and "\n" not in message


def test_address_plan_is_loopback_only() -> None:
    plan = AddressPlan("127.77")
    assert plan.origin(1) == "127.77.1.1" and plan.middlebox(254) == "127.77.2.254"
    with pytest.raises(ValueError):
        AddressPlan("10.77").origin(1)
