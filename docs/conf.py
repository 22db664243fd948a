"""Sphinx configuration of the sgd-dynamics documentation (``make docs``; issue 17).

Offline by construction: MathJax is served from the build's own ``_static/mathjax`` (the
``sphinx-mathjax-offline`` extension), no intersphinx, and the gallery runs on this machine's CPU.
``SGD_DYNAMICS_DOCS_GALLERY=0`` skips executing the gallery (the API-only build of the test).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import sphinx.ext.autosummary

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # document this checkout, not an installed copy

project = "sgd-dynamics"
author = "the sgd-dynamics authors"
copyright = "the sgd-dynamics authors"  # noqa: A001 - Sphinx's name
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.doctest",
    "sphinx-mathjax-offline",  # bundles MathJax 3 and points mathjax_path at the local copy
    "sphinx_gallery.gen_gallery",
    "myst_parser",  # docs/config.md is generated Markdown (sgd_dynamics.experiments.config_reference)
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "config.md"]  # config.md: included by guides/config.rst
root_doc = "index"

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
templates_path = ["_templates"]
napoleon_use_ivar = True  # "Attributes" sections as fields: autodoc documents the dataclass fields once
napoleon_google_docstring = True
napoleon_numpy_docstring = True
myst_heading_anchors = 3

_execute = os.environ.get("SGD_DYNAMICS_DOCS_GALLERY", "1") != "0"
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples" / "gallery"),
    "gallery_dirs": "gallery",
    "filename_pattern": r"/plot_",
    "plot_gallery": _execute,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "abort_on_example_error": True,
    "write_computation_times": False,  # its pages load jQuery/DataTables from a CDN: not offline
    "show_signature": False,
}

# Sphinx's own theme: its sidebar shows the collapsed table of contents, so writing ~550 pages stays linear
# (a theme that renders the whole tree on every page, such as furo, made the build quadratic: > 1 h).
html_theme = "alabaster"
html_title = "sgd-dynamics"
html_static_path: list[str] = []
html_show_sphinx = False  # no footer links to external sites: the site is read offline
html_theme_options = {"description": "limiting dynamics of SGD", "page_width": "1100px",
                      "sidebar_collapse": True}


_INLINE = re.compile(r"(``.*?``|:[a-z:]+:`[^`]*`|`[^`]*`)")


def _first_sentence(doc: list[str], settings: object) -> str:
    """Autosummary's one-line summary: the first sentence, never cut inside inline markup.

    Sphinx's own splitter cuts at any ". " (``d_r . d_s``, ``e.g. x``) and leaves an unclosed literal.
    """
    stanza: list[str] = []
    for line in doc:
        if line.strip():
            stanza.append(line.strip())
        elif stanza:
            break
    summary = ""
    for i, part in enumerate(_INLINE.split(" ".join(stanza))):
        end = re.search(r"\.(\s|$)", part) if i % 2 == 0 else None
        if end:
            return (summary + part[: end.start() + 1]).strip()
        summary += part
    return re.sub(r"::$", ".", summary.strip())


sphinx.ext.autosummary.extract_summary = _first_sentence


def _drop_inherited_type_docstring(app, what, name, obj, options, lines):
    # a constant (a dict, a tuple) has no docstring of its own: autodoc would show its type's
    if what in ("data", "attribute") and not isinstance(obj, type) and obj.__doc__ == type(obj).__doc__:
        lines[:] = []


def setup(app):
    """Register the docstring hook."""
    app.connect("autodoc-process-docstring", _drop_inherited_type_docstring)
