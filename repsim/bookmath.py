"""A Sphinx math renderer that writes MathML at build time, so the book's math needs no script.

Sphinx's default renderer loads MathJax from a CDN, which an offline reader of the book does not
have. Here each formula is converted once, when the book is built, by docutils' own LaTeX to
MathML converter; browsers display MathML natively. Enabled by ``repsim.bookmath`` in the book's
``sphinx.extra_extensions`` and ``html_math_renderer: mathml``.
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from docutils.utils.math import latex2mathml

# size commands the converter does not know; dropping them keeps the delimiter at normal size
_SIZES = re.compile(r"\\(?:big|Big|bigg|Bigg)[lrm]?(?![A-Za-z])")
# environments MyST's amsmath extension passes through whole; the converter wants their content
_ENV = re.compile(r"^\s*\\begin\{(equation|align|gather)\*?\}(.*)\\end\{\1\*?\}\s*$", re.S)


def to_mathml(latex: str, block: bool = False) -> str:
    """MathML for a LaTeX formula; raises ValueError naming the formula if it cannot convert."""
    tex = latex.strip()
    env = _ENV.match(tex)
    if env:
        tex = (
            env.group(2).strip()
            if env.group(1) == "equation"
            else r"\begin{aligned}" + env.group(2) + r"\end{aligned}"
        )
    for attempt in (tex, _SIZES.sub("", tex)):
        try:
            return latex2mathml.tex2mathml(attempt, as_block=block)
        except Exception as exc:  # docutils raises MathError (and SyntaxError) on unknown input
            error = exc
    raise ValueError(f"cannot render {latex.strip()!r} as MathML ({error}); simplify the formula")


def _warn(translator: Any, node: nodes.Node, exc: ValueError) -> None:
    from sphinx.util import logging

    logging.getLogger(__name__).warning(str(exc), location=node)


def visit_math(translator: Any, node: nodes.math) -> None:
    try:
        translator.body.append(to_mathml(node.astext()).replace("\n", ""))
    except ValueError as exc:
        _warn(translator, node, exc)
        translator.body.append(f'<code class="math">{translator.encode(node.astext())}</code>')
    raise nodes.SkipNode


def visit_displaymath(translator: Any, node: nodes.math_block) -> None:
    translator.body.append(translator.starttag(node, "div", CLASS="math notranslate nohighlight"))
    if node.get("number"):
        from sphinx.locale import _
        from sphinx.util.math import get_node_equation_number

        translator.body.append(f'<span class="eqno">({get_node_equation_number(translator, node)})')
        translator.add_permalink_ref(node, _("Link to this equation"))
        translator.body.append("</span>")
    try:
        translator.body.append(to_mathml(node.astext(), block=True))
    except ValueError as exc:
        _warn(translator, node, exc)
        translator.body.append(f"<pre>{translator.encode(node.astext())}</pre>")
    translator.body.append("</div>\n")
    raise nodes.SkipNode


def setup(app: Any) -> dict[str, Any]:
    """Register the ``mathml`` renderer (select it with ``html_math_renderer = "mathml"``)."""
    app.add_html_math_renderer("mathml", (visit_math, None), (visit_displaymath, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
