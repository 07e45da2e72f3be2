"""mkdocs hooks: the spec reference page and each plugin page's component list, generated from the registry.

``reference/spec.md`` is added to the site (never written into docs/); a line ``<!-- cl:components NAME -->``
in a page is replaced by every component of plugin NAME. Plugins are loaded strictly: a plugin that fails
to load fails the build.
"""

from __future__ import annotations

import re

from mkdocs.structure.files import File

from cl_core import catalogue
from cl_core.plugins import PluginHost

MARKER = re.compile(r"^<!-- cl:components ([a-z0-9-]+) -->$", re.MULTILINE)
_registry = None


def _reg():
    global _registry
    if _registry is None:
        _registry = PluginHost(strict=True).registry()
    return _registry


def on_files(files, config):
    files.append(File.generated(config, "reference/spec.md", content=catalogue.reference_page(_reg())))
    return files


def on_page_markdown(markdown, page, config, files):
    return MARKER.sub(lambda m: catalogue.plugin_section(_reg(), m.group(1), level=3), markdown)
