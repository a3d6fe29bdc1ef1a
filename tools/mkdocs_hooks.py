"""mkdocs hook: links from the docs to the repository's root files, made to work on the site.

The Markdown files link to each other with relative paths that work on GitHub
(``../README.md#settings`` from docs/, ``docs/safety.md`` from the README). The root files
README.md, CHANGELOG.md and DESIGN.md are pages of the site through small pages of docs/ that
include them (getting-started.md, changelog.md, design.md); this hook points the links to the
root files at those pages. A link to any other file outside docs/ is reported as a warning,
which ``mkdocs build --strict`` turns into a failure.
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger("mkdocs.hooks.pgviews")

# Root file -> the page of docs/ that includes it.
ROOT_PAGES = {
    "README.md": "getting-started.md",
    "CHANGELOG.md": "changelog.md",
    "DESIGN.md": "design.md",
}

# A Markdown link or image target that leaves docs/: ](../PATH) or ](../PATH#anchor).
_OUTSIDE = re.compile(r"\]\(\.\./([^)#\s]+)(#[^)\s]*)?\)")


def on_page_markdown(markdown, page, config, files):
    def replace(m: re.Match) -> str:
        target, anchor = m.group(1), m.group(2) or ""
        if target in ROOT_PAGES:
            return f"]({ROOT_PAGES[target]}{anchor})"
        log.warning(
            "Doc file '%s' links to '../%s', outside docs/ and not a page of the site",
            page.file.src_uri,
            target,
        )
        return m.group(0)

    return _OUTSIDE.sub(replace, markdown)
