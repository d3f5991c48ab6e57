"""``.. smtpd-options-table::``: the table of the Server options and where
each can be set, made at build time from pytest_smtpd/options.py."""

from __future__ import annotations

from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from pytest_smtpd.options import OPTIONS


def _literal(text: str) -> str:
    return f"``{text}``"


class OptionsTable(SphinxDirective):
    """A list-table: option, default, ini key, flag, SMTPServer, meaning."""

    def run(self) -> list[nodes.Node]:
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 22 12 22 18 10 40",
            "",
            "   * - option",
            "     - default",
            "     - ini",
            "     - command line",
            "     - SMTPServer",
            "     - meaning",
        ]
        for row in OPTIONS.values():
            flags = ", ".join(_literal(flag) for flag in row.flag.flags) if row.flag is not None else ""
            compat = {"ours": "keyword", "stdlib": "positional"}.get(row.compat or "", "")
            meaning = row.help + (f" (default: {row.why})" if row.why else "")
            cells = [
                _literal(row.name),
                _literal(row.default_text),
                _literal(row.ini_name) if row.ini is not None else "",
                flags,
                compat,
                meaning.replace("*", r"\*"),
            ]
            lines.append(f"   * - {cells[0]}")
            lines.extend(f"     - {cell}" for cell in cells[1:])
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="pytest_smtpd/options.py"), self.content_offset, container)
        return container.children


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("smtpd-options-table", OptionsTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
