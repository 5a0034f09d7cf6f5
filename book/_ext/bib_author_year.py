"""Author-year labels in the bibliography, matching the author-year citations in the text.

pybtex ships only numeric and alpha ("[IS15]") labels, so the list on the bibliography page
did not look like the citations "Ioffe and Szegedy (2015)" that point to it. This registers
a pybtex label style ``author_year`` ("Ioffe and Szegedy, 2015"; "Srivastava et al., 2014")
and a formatting style ``author_year`` (pybtex's ``unsrt`` with those labels, sorted by
author and year) for ``bibtex_default_style``.
"""
from __future__ import annotations

from typing import Any

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from sphinx.application import Sphinx


def _surname(person) -> str:
    return " ".join(person.prelast_names + person.last_names).replace("{", "").replace("}", "")


class AuthorYearLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        """Labels in entry order; equal labels get a, b, ... after the year."""
        labels = list(self._plain_labels(sorted_entries))
        repeated = {label for label in labels if labels.count(label) > 1}
        seen: dict[str, int] = {}
        for label in labels:
            if label in repeated:
                seen[label] = seen.get(label, 0) + 1
                label = label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            yield label

    @staticmethod
    def _plain_labels(sorted_entries):
        for entry in sorted_entries:
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            names = [_surname(p) for p in people]
            if len(names) == 1:
                who = names[0]
            elif len(names) == 2:
                who = f"{names[0]} and {names[1]}"
            elif names:
                who = f"{names[0]} et al."
            else:
                who = entry.fields.get("title", entry.key)
            yield f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(UnsrtStyle):
    default_label_style = "author_year"
    default_sorting_style = "author_year_title"


def setup(app: Sphinx) -> dict[str, Any]:
    register_plugin("pybtex.style.labels", "author_year", AuthorYearLabelStyle)
    register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
