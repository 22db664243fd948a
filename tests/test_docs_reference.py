"""The API reference (docs/api/*.rst, built by ``make docs``) lists every public name (issue 17).

Sphinx is not needed: the test reads the reST sources. Each package face has a page; each name of its
``__all__`` is an autosummary entry of that page (which gives it its own page) or, for an object another
face documents, a link to that face's entry. ``python docs/api_pages.py`` rewrites the pages.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _load(name: str, path: Path):
    # by path: neither docs/ nor tests/ is a package on sys.path under every way of running pytest
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


api_pages = _load("api_pages", DOCS / "api_pages.py")
_public_api = _load("_public_api_lists", Path(__file__).with_name("test_public_api.py"))
PACKAGES, OPTIONAL_MODULES = _public_api.PACKAGES, _public_api.OPTIONAL_MODULES
FACES = [face for face, _ in api_pages.FACES]
SRC = Path(__file__).resolve().parents[1] / "src"


def _public_names(face: str) -> list[str]:
    if face not in OPTIONAL_MODULES:
        return api_pages.public_names(face)
    # an optional extra (Lightning takes ~15 s to import): its literal ``__all__``, read from the source
    tree = ast.parse((SRC / (face.replace(".", "/") + ".py")).read_text())
    return next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                and any(getattr(t, "id", None) == "__all__" for t in node.targets))


def _autosummary_entries(text: str) -> set[str]:
    # the indented names under each ``.. autosummary::`` directive (after its options and a blank line)
    entries: set[str] = set()
    for block in re.split(r"(?:^|\n)\.\. autosummary::\n", text)[1:]:
        body = block.split("\n\n", 1)[1] if "\n\n" in block else ""
        for line in body.splitlines():
            if not line.startswith("   "):
                break
            entries.add(line.strip())
    return entries


def _links(text: str) -> dict[str, str]:
    return dict(re.findall(r"^- ``(\w+)``: :obj:`([\w.]+)`$", text, flags=re.MULTILINE))


def test_every_package_face_has_a_page_in_the_reference():
    assert set(PACKAGES) <= set(FACES), sorted(set(PACKAGES) - set(FACES))
    index = (DOCS / "api" / "index.rst").read_text()
    for face in FACES:
        assert (DOCS / "api" / f"{face}.rst").is_file(), face
        assert re.search(rf"^   {re.escape(face)}$", index, flags=re.MULTILINE), face


@pytest.mark.parametrize("face", FACES)
def test_every_public_name_is_in_the_reference(face):
    text = (DOCS / "api" / f"{face}.rst").read_text()
    assert f".. currentmodule:: {face}\n" in text
    entries, links = _autosummary_entries(text), _links(text)
    names = _public_names(face)
    missing = [n for n in names if n not in entries and n not in links]
    assert not missing, f"{face}: {missing} missing from docs/api/{face}.rst (python docs/api_pages.py)"
    stale = sorted((entries | set(links)) - set(names))
    assert not stale, f"{face}: {stale} are documented but not public"
    for name, target in links.items():
        module = importlib.import_module(face)
        # a link names the same object, documented on its home face's page
        home, _, attr = target.rpartition(".")
        assert attr == name and getattr(importlib.import_module(home), name) is getattr(module, name), target
        assert name in _autosummary_entries((DOCS / "api" / f"{home}.rst").read_text()), target


def test_the_entry_parser_sees_a_missing_name():
    text = ".. autosummary::\n   :toctree: generated\n\n   alpha\n   beta\n\nAfter\n"
    assert _autosummary_entries(text) == {"alpha", "beta"}
    assert _autosummary_entries(text.replace("   beta\n", "")) == {"alpha"}
