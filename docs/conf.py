"""Sphinx configuration for twisted-patch.

The API pages are generated from the docstrings of the *installed* package
(``make docs`` runs the virtual environment's sphinx-build after ``make
install``); the source tree is deliberately not put on ``sys.path``, because
it has no compiled ``_native`` extension.  Warnings are errors (``-W``), so a
page listed in the toctree must exist and every cross-reference must resolve.
"""

from importlib.metadata import version as _installed_version

project = "twisted-patch"
author = "twisted-patch developers"
copyright = "2026, twisted-patch developers"
# The one version is twisted_patch.__version__; the installed metadata carries it.
release = _installed_version("twisted-patch")
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]

# API reference: our own docstrings only, in source order, types in the text.
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_inherit_docstrings = False  # Twisted's epytext docstrings are not reST
autodoc_default_options = {"members": True, "show-inheritance": True}

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_theme_options = {
    "description": "TCP listening ports nobody else can take over",
    "fixed_sidebar": True,
}
html_title = "twisted-patch"
nitpicky = False
