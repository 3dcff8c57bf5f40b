"""The shell of every self-contained HTML page symgrad writes (reports, explanations)."""

from __future__ import annotations

import html
import re

_CODE = re.compile(r"`([^`]+)`")
_EMPHASIS = re.compile(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])")


def inline(text: str) -> str:
    """Plain text with Markdown's inline marks as HTML: ```code``` as <code>, *word* as <em>;
    everything else escaped.

    >>> inline("the `torch_fn` is *inconclusive* where a < b")
    'the <code>torch_fn</code> is <em>inconclusive</em> where a &lt; b'
    """
    out, last = [], 0
    for m in _CODE.finditer(text):
        out.append(_EMPHASIS.sub(r"<em>\1</em>", html.escape(text[last:m.start()])))
        out.append(f"<code>{html.escape(m.group(1))}</code>")
        last = m.end()
    out.append(_EMPHASIS.sub(r"<em>\1</em>", html.escape(text[last:])))
    return "".join(out)


def page(title: str, body: str) -> str:
    """A self-contained page; a tiny inline script records that its math rendered, and how many
    math paragraphs are taller than their box (a vertical scrollbar beside the formula, or a
    clipped one: MathML fractions stick out ~5 px, hence the 6 px padding)."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 6px}}
math{{font-size:1.1em}} p{{overflow-x:auto;overflow-y:hidden;padding:6px 0}}
td,th{{font-variant-numeric:tabular-nums}}
th{{background:#f4f4f4}}</style></head>
<body><h1>{html.escape(title)}</h1>
{body}
<script>
addEventListener("load", function () {{
  var m = document.getElementsByTagName("math"), ok = 0;
  for (var i = 0; i < m.length; i++) {{
    var r = m[i].getBoundingClientRect(); if (r.width > 0 && r.height > 0) ok++;
  }}
  document.body.setAttribute("data-math-total", m.length);
  document.body.setAttribute("data-math-rendered", ok);
  var p = document.getElementsByTagName("p"), cut = 0;
  for (var j = 0; j < p.length; j++) {{
    if (p[j].getElementsByTagName("math").length && p[j].scrollHeight > p[j].clientHeight) cut++;
  }}
  document.body.setAttribute("data-math-clipped", cut);
}});
</script>
</body></html>
"""
