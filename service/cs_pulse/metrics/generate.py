"""Write (or ``--check``) every file generated from the catalogue: Prometheus and Grafana
rules, dashboards, their Kubernetes objects (``metrics/k8s.py``) and the README's metric table.
``python -m cs_pulse.metrics.generate``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cs_pulse.metrics import k8s, readme, rules


def repo_root() -> Path:
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists():
            return folder
    raise SystemExit("run from inside the repository (no pyproject.toml found)")


def generated(root: Path) -> dict[str, str]:
    from cs_pulse.metrics import dashboards  # needs the dev extra (grafana-foundation-sdk)

    files = {**rules.render(), **dashboards.render(), **readme.render(root)}
    return {**files, **k8s.render(files)}   # the PrometheusRule and dashboard ConfigMaps


def stale(root: Path, files: dict[str, str] | None = None) -> list[str]:
    files = generated(root) if files is None else files
    return [path for path, text in files.items()
            if not (root / path).exists() or (root / path).read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    args = parser.parse_args(argv)
    root = args.root or repo_root()
    if args.check:
        old = stale(root)
        for path in old:
            print(f"stale: {path} (run python -m cs_pulse.metrics.generate)", file=sys.stderr)
        return 1 if old else 0
    files = generated(root)   # rendered once: the dashboards take a while
    for path in stale(root, files):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(files[path])
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
