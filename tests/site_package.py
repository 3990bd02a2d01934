"""A site's package as `pip install` leaves it (the modules, and a dist-info naming their entry points), and
voipwatch run over it as a site would run it: `python -m voipwatch` in a process whose path holds both."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def install(root: Path, package: str, modules: dict[str, str], entry_points: dict[str, dict[str, str]]) -> None:
    """A package and the dist-info `pip install` would write for it, entry points included."""
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("", encoding="utf-8")
    for name, source in modules.items():
        (root / package / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    dist = root / f"{package}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in targets.items()) + "\n"
        for group, targets in entry_points.items()), encoding="utf-8")


def voipwatch(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{REPO}"}
    return subprocess.run([sys.executable, "-m", "voipwatch", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
