"""The README's layout section matches the folders, and the pure core stays pure."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "service" / "cs_pulse"


def layout_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Layout", 1)[1]
    return section.split("```", 2)[1]


def test_the_readme_layout_names_every_package_and_module() -> None:
    block = layout_block()
    named = set(re.findall(r"^  (\w+)/", block, re.M))
    packages = {p.name for p in PACKAGE.iterdir()
                if p.is_dir() and (p / "__init__.py").exists()}
    assert named == packages
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py":
            assert path.name in block or path.stem in block, f"{path} not in the README layout"
    for folder in re.findall(r"^(\w[\w/]*)/?\s", block, re.M):
        assert (ROOT / folder.rstrip("/")).exists() or (PACKAGE.parent / folder).exists(), folder


def test_the_domain_imports_no_kafka_faust_or_io_edge() -> None:
    edge = re.compile(r"^\s*(from|import) (faust|aiokafka|aiohttp|prometheus_client|os\b|"
                      r"cs_pulse\.(worker|metrics|sources|settings))", re.M)
    for path in (PACKAGE / "domain").glob("*.py"):
        assert not edge.search(path.read_text()), path
