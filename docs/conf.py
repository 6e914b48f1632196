"""Sphinx configuration for twisted-patch."""

project = "twisted-patch"
author = "twisted-patch developers"
copyright = "2026, twisted-patch developers"
release = "0.1.0"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.intersphinx", "sphinx.ext.viewcode"]
intersphinx_mapping: dict[str, tuple[str, None]] = {}
autodoc_typehints = "description"
exclude_patterns = ["_build"]
html_theme = "alabaster"
nitpicky = False
