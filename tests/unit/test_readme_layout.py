"""The README's stage table and layout match the code: every module the table names exists,
every setting it names is one, and the layout names every module of gateway/."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.settings import Mailbox, Settings

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def _stage_rows() -> list[list[str]]:
    start = README.index("| stage | module | settings |")
    rows = []
    for line in README[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_every_module_the_stage_table_names_exists() -> None:
    rows = _stage_rows()
    assert len(rows) >= 10
    for _stage, modules, _settings in rows:
        folder = ROOT
        for name in re.findall(r"`([^`]+)`", modules):
            path = ROOT / name if name.startswith("gateway/") else folder / name
            assert path.exists(), f"the README names {name}, which is not there"
            if name.startswith("gateway/"):  # names after it are within its package
                folder = path if path.is_dir() else path.parent


def test_every_setting_the_stage_table_names_is_one() -> None:
    for _stage, _modules, settings in _stage_rows():
        for section in re.findall(r"`\[\[?(\w+)\]\]?`", settings):
            assert section in Settings.model_fields, section
        for dotted in re.findall(r"`(\w+)\.(\w+?)(\*)?`", settings):
            section, key, star = dotted
            fields = Settings.model_fields[section].annotation.model_fields  # type: ignore[union-attr]
            assert any(f == key or (star and f.startswith(key)) for f in fields), f"{section}.{key}{star}"
        for top in re.findall(r"(?<![\w.\[])`(\w+)`", settings):
            assert top in _known_names(), top


def _known_names() -> set[str]:
    known = set(Settings.model_fields) | set(Mailbox.model_fields)
    for field in Settings.model_fields.values():
        if hasattr(field.annotation, "model_fields"):
            known |= set(field.annotation.model_fields)  # type: ignore[union-attr]
    return known


def test_the_layout_names_every_module() -> None:
    block = README[README.index("## Layout") : README.index("## Dependencies and why")]
    words = set(re.findall(r"[\w.]+", block))
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        name = path.parent.name if path.name == "__init__.py" else path.stem
        assert name in words or f"{name}.py" in words, f"the README's layout does not name {path}"
