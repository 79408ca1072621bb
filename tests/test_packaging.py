"""The pins: environment.yml mirrors requirements/lock.txt, and the lock holds what the code imports."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lock() -> list[str]:
    return [line.strip() for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines() if line.strip()]


def test_environment_yml_mirrors_the_lock():
    lines = (ROOT / "environment.yml").read_text().splitlines()
    pip_pins = [line.strip()[2:] for line in lines if line.startswith("      - ")]
    assert pip_pins == _lock()


def test_every_lock_line_is_an_exact_pin():
    assert all("==" in line for line in _lock())
    names = [line.split("==")[0].lower() for line in _lock()]
    assert len(names) == len(set(names))
    for needed in ("jax", "jaxlib", "numpy", "pandas", "pillow", "jupyter-book", "altair", "nbval"):
        assert needed in names
