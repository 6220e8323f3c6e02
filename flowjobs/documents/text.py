"""Text for reportlab: fonts that can draw any name, and escaping.

reportlab's `Paragraph` text is markup, so user data is escaped (an address like
`Ada <ada@example.com>` would otherwise vanish). Helvetica cannot draw Ł or ź: the body font
is DejaVu Sans, shipped in `fonts/` (its licence is beside it) and embedded in every PDF.
DejaVu has no CJK glyphs, so runs of CJK characters are set in Adobe's CID fonts
(STSong-Light for Chinese and Japanese, HYSMyeongJo-Medium for Korean), which every PDF
reader provides.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

FONTS = Path(__file__).parent / "fonts"
BODY, BOLD = "DejaVuSans", "DejaVuSans-Bold"
HAN, HANGUL = "STSong-Light", "HYSMyeongJo-Medium"
_CJK = re.compile(
    r"([\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]+|[\uac00-\ud7af\u1100-\u11ff]+)"
)


@lru_cache(maxsize=1)
def register_fonts() -> None:
    from reportlab.lib.fonts import addMapping
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfbase.ttfonts import TTFont

    pdfmetrics.registerFont(TTFont(BODY, str(FONTS / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(TTFont(BOLD, str(FONTS / "DejaVuSans-Bold.ttf")))
    addMapping(BODY, 0, 0, BODY)
    addMapping(BODY, 1, 0, BOLD)
    addMapping(BODY, 0, 1, BODY)
    addMapping(BODY, 1, 1, BOLD)
    pdfmetrics.registerFont(UnicodeCIDFont(HAN))
    pdfmetrics.registerFont(UnicodeCIDFont(HANGUL))


def markup(text: object) -> str:
    """Escaped Paragraph markup for `text`, CJK runs wrapped in a CID font."""
    out = []
    for part in _CJK.split("" if text is None else str(text)):
        if not part:
            continue
        if _CJK.fullmatch(part):
            face = (
                HANGUL
                if "\uac00" <= part[0] <= "\ud7af" or "\u1100" <= part[0] <= "\u11ff"
                else HAN
            )
            out.append(f'<font face="{face}">{escape(part)}</font>')
        else:
            out.append(escape(part))
    return "".join(out)
