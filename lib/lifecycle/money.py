"""Money as a learner reads it: one formatter for every dollar amount the course prints, plots or renders.

- `usd(x)`            "$0.01", "$999.50", "$10,000", "$3.65 million", "$36.5 trillion" (words from a million up);
                      `usd(x, short=True)` gives "$3.65M", "$36.5T" for axis ticks and tight labels.
- `per_query(x)`      a tenth of a cent or more: "$0.01 per query"; less: "$44.47 per million queries".
- `cents(x)`          "0.0044 ¢" (a dollar amount shown in cents).
- `markdown(text)`    the same text, safe to render as Markdown: every "$" becomes `DOLLAR_MARKDOWN`.
- `mathtext(text)`    the same text, safe for a matplotlib label: every "$" becomes "\\$".
- `parse_usd(text)`   the number back from `usd`'s output (for tests and round trips).

Never scientific notation: every number is written out in fixed point with thousands separators. A NaN or an
infinity raises ValueError instead of printing "nan" or "inf" where a learner expects money.

Why `<span>&#36;</span>` in Markdown. Notebook front ends typeset "$...$" as maths, and more than one of them
looks for it in two places. JupyterLab 4 and Notebook 7 first cut maths out of the Markdown *source* (any "$",
even "\\$", since the Markdown parser turns "\\$" back into "$" before MathJax runs), then let MathJax scan
the rendered *page text* for pairs of "$" (so the entity "&#36;" alone fails too: it becomes "$" in the page).
VS Code (markdown-it with KaTeX), Colab and GitHub find maths in the source only. The character reference
`&#36;` hides the sign from every source scan, and wrapping it in its own `<span>` hides it from MathJax's page
scan, which never pairs delimiters across element boundaries (MathJax 3 `HTMLDomStrings`; MathJax 2's tex2jax
stops at any element but `<br>`). Checked in JupyterLab 4.6 by `tests/test_browser.py`.
"""
from __future__ import annotations

import math
import re

from .checks import is_number

DOLLAR_MARKDOWN = "<span>&#36;</span>"
CENT = "¢"

# (factor, word, suffix): amounts from a million up are written in words (or suffixes when short)
_SCALES = ((1e12, "trillion", "T"), (1e9, "billion", "B"), (1e6, "million", "M"))
_SHORT_THOUSANDS = (1e3, "thousand", "k")  # only the short form abbreviates thousands: "$250k" on an axis


def _finite(x, name: str = "amount") -> float:
    """`x` as a float; TypeError for a non-number, ValueError for NaN or an infinity (never printed as money)."""
    if not is_number(x):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__} {x!r}")
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite to be shown as money, got {v!r}; check the computation that made it")
    return v


def fixed(x: float, sig: int = 3, *, min_decimals: int = 0, strip: bool = True) -> str:
    """`x` rounded to `sig` significant digits, in fixed point with thousands separators (never "1e+04").

    Integer digits are never dropped: fixed(123456, 3) == "123,456". `min_decimals` keeps at least that many
    decimals (2 for cents: "0.50"); `strip` removes trailing zeros beyond them.
    """
    v = _finite(x)
    if sig < 1:
        raise ValueError(f"sig must be at least 1, got {sig}")
    if v == 0:
        decimals = min_decimals
    else:
        magnitude = math.floor(math.log10(abs(v)))
        decimals = max(min_decimals, sig - 1 - magnitude)
        # rounding can carry into the next power of ten (0.0999 -> 0.1): count digits of the rounded value
        rounded = round(abs(v), decimals)
        if rounded and math.floor(math.log10(rounded)) > magnitude:
            decimals = max(min_decimals, decimals - 1)
    text = f"{v:,.{decimals}f}"
    if strip and decimals > min_decimals:
        whole, _, frac = text.partition(".")
        frac = frac.rstrip("0").ljust(min_decimals, "0")
        text = whole + ("." + frac if frac else "")
    if text.lstrip("-").strip("0.,") == "":  # rounded to zero: no "-0"
        text = text.lstrip("-")
    return text


def _round_sig(a: float, sig: int) -> float:
    """`a` (>= 0) rounded to `sig` significant digits (123456 -> 123000.0 for sig=3)."""
    return 0.0 if a == 0 else round(a, sig - 1 - math.floor(math.log10(a)))


def usd(x, sig: int = 3, *, short: bool = False) -> str:
    """Dollars as people write them: "$0.01", "$1.50", "$10,000", "$3.65 million", "$36.5 trillion".

    Under $1,000: cents always shown ("$1.00"), and at least `sig` significant digits for fractions of a dollar
    ("$0.00445"). $1,000 to $1 million: whole dollars with separators. From a million up: `sig` significant
    digits and a word ("million", "billion", "trillion"), or with `short` a suffix ("M", "B", "T"; "k" too).
    """
    v = _finite(x)
    a = abs(v)
    r = _round_sig(a, sig)  # the scale is chosen on the rounded value: 999,999.7 reads "$1 million"
    sign = "-" if v < 0 and r > 0 else ""
    if r == 0:
        return "$0"
    for factor, word, suffix in _SCALES + ((_SHORT_THOUSANDS,) if short else ()):
        if r >= factor:
            n = fixed(r / factor, sig)
            return f"{sign}${n}{suffix}" if short else f"{sign}${n} {word}"
    if round(a, 2) >= 1000:  # under $1,000 cents are shown, so only cents can round up to it
        return f"{sign}${a:,.0f}"
    if short and a >= 1:
        return f"{sign}${fixed(a, sig)}"
    return f"{sign}${fixed(a, sig, min_decimals=2 if r >= 0.01 else 0)}"


def cents(x, sig: int = 2) -> str:
    """A dollar amount written in cents: cents(0.000044) == "0.0044 ¢"."""
    return f"{fixed(_finite(x) * 100, sig)} {CENT}"


def per_query(x, sig: int = 4) -> str:
    """A price per query: "$0.002 per query" from a tenth of a cent up, else "$44.47 per million queries"."""
    v = _finite(x, "usd_per_query")
    if abs(v) >= 0.001 or v == 0:
        return f"{usd(v, sig)} per query"
    return f"{usd(v * 1e6, sig)} per million queries"


_CODE = re.compile(r"(```.*?```|`[^`\n]*`)", re.S)  # fenced blocks and inline code spans


def markdown(text: str) -> str:
    """`text` with every "$" written so that no Markdown front end typesets it as maths (see the module docstring).

    Idempotent; "$" inside code (`...` or fenced) is left alone. Meant for text that holds money and no maths.
    Text that holds both: write money with `DOLLAR_MARKDOWN` and leave the maths' "$" alone.
    """
    if not isinstance(text, str):
        raise TypeError(f"markdown() takes text, got {type(text).__name__}")
    parts = _CODE.split(text)  # code is shown verbatim and never typeset: its "$" stays as it is
    return "".join(p if i % 2 else p.replace("$", DOLLAR_MARKDOWN) for i, p in enumerate(parts))


def mathtext(text: str) -> str:
    """`text` with every "$" escaped for matplotlib, which reads a pair of "$" as mathtext."""
    return re.sub(r"(?<!\\)\$", r"\\$", text)


_PARSE = re.compile(r"^(-?)\$([\d,]+(?:\.\d+)?)(?: (thousand|million|billion|trillion)|([kMBT]))?$")
_FACTOR = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12, "k": 1e3, "M": 1e6, "B": 1e9,
           "T": 1e12}


def parse_usd(text: str) -> float:
    """The amount `usd` wrote: parse_usd("$36.5 trillion") == 36.5e12; ValueError for anything else."""
    m = _PARSE.match(text.replace(DOLLAR_MARKDOWN, "$").strip())
    if not m:
        raise ValueError(f"not an amount written by lifecycle.money.usd: {text!r}")
    sign, number, word, suffix = m.groups()
    value = float(number.replace(",", "")) * _FACTOR.get(word or suffix or "", 1.0)
    return -value if sign else value
