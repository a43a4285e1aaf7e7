"""The one table writer: Markdown, LaTeX (booktabs) and CSV from the same columns and cell texts.

Callers format their numbers into cell strings (plain Unicode text) and describe the columns once; this
module does the rendering and the escaping, so every table the harness writes (the comparison tables, the
demo table, the ablation tables, metric summaries) escapes the same way:

* Markdown: ``|`` becomes ``\\|`` and newlines become ``<br>``, so free text (notes, switch lists) never
  breaks a row.
* LaTeX: the ten special characters are escaped, and the few Unicode signs tables use are written as
  math (``±`` -> ``$\\pm$``, ``×`` -> ``$\\times$``, ``Δ`` -> ``$\\Delta$``, ``–`` -> ``--``).

A cell may be a :class:`Strong` string (bold in both formats). A table is a list of rows, each a list of
cells, one per :class:`Column`; extra columns are just more entries.
"""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from harness.io import atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Column", "Strong", "Table", "fmt_num", "md_escape", "tex_escape", "tex_text"]

MISSING = "-"

_TEX_ESCAPE = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
               "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
               "±": r"$\pm$", "×": r"$\times$", "Δ": r"$\Delta$", "–": "--", "\n": " "}
_MD_ALIGN = {"l": ":--", "c": ":-:", "r": "--:"}


class Strong(str):
    """A cell rendered bold (``**x**`` in Markdown, ``\\textbf{x}`` in LaTeX)."""


def tex_escape(s: str) -> str:
    """Plain text -> LaTeX text (specials escaped, ``±``/``×``/``Δ`` as math, ``–`` as ``--``)."""
    return "".join(_TEX_ESCAPE.get(ch, ch) for ch in str(s))


def tex_text(s: str) -> str:
    """Free text (captions, notes) -> LaTeX: as :func:`tex_escape`, Markdown ``code`` as ``\\texttt``."""
    parts = str(s).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: no code spans
        return tex_escape(s)
    return "".join(tex_escape(p) if i % 2 == 0 else rf"\texttt{{{tex_escape(p)}}}" for i, p in enumerate(parts))


def md_escape(s: str) -> str:
    """Plain text -> one Markdown table cell (``|`` escaped, line breaks as ``<br>``)."""
    s = str(s).replace("\r\n", "\n").replace("|", r"\|")
    return "<br>".join(s.split("\n"))


def fmt_num(v: Any, spec: str = ".3f", *, signed: bool = False, missing: str = MISSING) -> str:
    """``format(v, spec)`` (``+`` first when ``signed``); None/NaN/inf -> ``missing``."""
    if v is None or isinstance(v, str):
        return missing if v is None else v
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return missing
    return format(f, ("+" if signed else "") + spec)


@dataclass(frozen=True)
class Column:
    """One column: its header (Markdown/CSV text), alignment (``l``/``c``/``r``) and, when the LaTeX
    header needs markup, that header as raw LaTeX (otherwise the header is escaped)."""

    header: str
    align: str = "r"
    tex: str | None = None

    def __post_init__(self) -> None:
        if self.align not in _MD_ALIGN:
            raise ValueError(f"Column {self.header!r}: align must be one of l, c, r, got {self.align!r}")


@dataclass
class Table:
    """Columns, formatted rows and the numbers behind them.

    Args:
        columns: one :class:`Column` per cell of a row.
        rows: cell texts (plain Unicode; :class:`Strong` for bold), ``len(columns)`` per row.
        frame: the numbers for the CSV (numeric cells stay numbers); ``None`` writes the texts.
        title: Markdown heading (``### title``) and, unless ``caption`` is given, the LaTeX caption.
        intro: a Markdown paragraph between the heading and the table.
        caption / label: the LaTeX float's caption (plain text) and ``\\label{tab:<label>}``.
        notes: paragraphs under the table (plain text; Markdown may use its inline markup).
        groups: per row a group key; LaTeX draws a ``\\midrule`` where it changes (e.g. model family).
        comment: a ``%`` line at the top of the LaTeX file.
        sections: more tables that follow this one in the Markdown and LaTeX files (e.g. statistics
            below a results table); the CSV holds this table only.
    """

    columns: Sequence[Column]
    rows: Sequence[Sequence[str]]
    frame: pd.DataFrame | None = None
    title: str = ""
    intro: str = ""
    caption: str | None = None
    label: str | None = None
    notes: Sequence[str] = field(default_factory=tuple)
    groups: Sequence[Any] | None = None
    comment: str | None = None
    heading_level: int = 3
    sections: Sequence["Table"] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        n = len(self.columns)
        for i, r in enumerate(self.rows):
            if len(r) != n:
                raise ValueError(f"Table {self.title!r}: row {i} has {len(r)} cells for {n} columns")

    # ------------------------------------------------------------------------------------------------
    def markdown(self) -> str:
        """GitHub Markdown: heading, the table, each note its own paragraph, then the sections."""
        def cell(c: str) -> str:
            s = md_escape(c)
            return f"**{s}**" if isinstance(c, Strong) else s

        lines = [f"{'#' * self.heading_level} {self.title}", ""] if self.title else []
        lines += [self.intro, ""] if self.intro else []
        lines += ["| " + " | ".join(md_escape(c.header) for c in self.columns) + " |",
                  "|" + "|".join(_MD_ALIGN[c.align] for c in self.columns) + "|"]
        lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in self.rows]
        text = "\n".join(lines) + "\n"
        if self.notes:
            text += "\n" + "\n\n".join(self.notes) + "\n"
        for sec in self.sections:
            text += "\n" + sec.markdown()
        return text

    def latex(self) -> str:
        """A booktabs ``table`` float with the notes as footnote-size paragraphs; each section its own float."""
        def cell(c: str) -> str:
            s = tex_escape(c)
            return rf"\textbf{{{s}}}" if isinstance(c, Strong) else s

        caption = self.caption if self.caption is not None else self.title
        lines = [f"% {self.comment}"] if self.comment else []
        lines += [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{tex_text(caption)}}}"]
        if self.label:
            lines.append(rf"\label{{tab:{self.label}}}")
        lines += [rf"\begin{{tabular}}{{{''.join(c.align for c in self.columns)}}}", r"\toprule",
                  " & ".join(c.tex if c.tex is not None else tex_escape(c.header) for c in self.columns) + r" \\",
                  r"\midrule"]
        for i, r in enumerate(self.rows):
            if self.groups is not None and i and self.groups[i] != self.groups[i - 1]:
                lines.append(r"\midrule")
            lines.append(" & ".join(cell(c) for c in r) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        lines += [rf"\par\footnotesize {tex_text(n)}" for n in self.notes]
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n" + "".join("\n" + sec.latex() for sec in self.sections)

    def csv(self, float_format: str | None = None) -> str:
        """The numbers (``frame``, via ``DataFrame.to_csv``) as CSV; the cell texts when there is no frame."""
        if self.frame is not None:
            return self.frame.to_csv(index=False, float_format=float_format)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([c.header for c in self.columns])
        w.writerows([list(r) for r in self.rows])
        return buf.getvalue()

    def write(self, stem: str | os.PathLike, formats: Sequence[str] = ("md", "tex", "csv"),
              float_format: str | None = None) -> dict[str, Path]:
        """Write ``<stem>.md/.tex/.csv`` (atomically); return ``{format: path}``."""
        stem = Path(stem)
        render = {"md": self.markdown, "tex": self.latex, "csv": lambda: self.csv(float_format)}
        unknown = sorted(set(formats) - set(render))
        if unknown:
            raise ValueError(f"Table.write: unknown format(s) {unknown}; known: {sorted(render)}")
        return {f: atomic_write_text(stem.with_name(f"{stem.name}.{f}"), render[f]()) for f in formats}
