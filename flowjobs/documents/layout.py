"""Invoice and receipt layouts (spec §11): pure functions of a `Document`, returning PDF bytes.

A4, DejaVu Sans, a header (logo when given as a local file, organisation name, title), the
details, seller and "Bill to" blocks, a headline, the line table (its header repeated on
every page, so long invoices flow over several pages; each line with its billing period), and
the totals. The numbers come from flowjobs.billing.totals.compute — the function the billing
run charges with — so a document shows what was charged. A paid invoice says "Paid <date>"
and "Amount due $0.00"; an open one its amount due. Money is formatted per currency
(flowjobs.billing.money); output is byte-identical for the same input (`invariant=1`), which
makes re-rendering safe to compare.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

from flowjobs.billing.money import format_money
from flowjobs.documents.document import (
    EMPHASISED,
    Document,
    Party,
    detail_rows,
    headline,
    pay_link,
    total_rows,
)
from flowjobs.documents.fast import fits, render_fast
from flowjobs.documents.text import _CJK, BODY, BOLD, markup, register_fonts

log = logging.getLogger("flowjobs.documents")


def render(doc: Document) -> bytes:
    if fits(doc):
        return render_fast(doc)
    return render_flowing(doc)


def render_flowing(doc: Document) -> bytes:
    """The platypus layout: any length (pages flow, header repeated), CJK, logos."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import SimpleDocTemplate

    register_fonts()
    buffer = io.BytesIO()
    # pageCompression off: zlib took half the render time; an invoice stays ~60 KB
    template = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=16 * mm,
        title=f"{doc.kind.title()} {doc.number}",
        author=doc.seller.name,
        invariant=1,
        pageCompression=0,
    )
    fonts = (BODY, BOLD)
    number_pages = _page_number(fonts[0])
    template.build(
        _story(doc, _styles(*fonts)), onLaterPages=number_pages, onFirstPage=number_pages
    )
    return buffer.getvalue()


def _styles(body: str, bold: str):
    from reportlab.lib.styles import ParagraphStyle

    base = ParagraphStyle("body", fontName=body, fontSize=9.5, leading=13)
    return {
        "fonts": (body, bold),
        "body": base,
        "small": ParagraphStyle("small", parent=base, fontSize=8.5, leading=11),
        "title": ParagraphStyle("title", parent=base, fontName=bold, fontSize=20, leading=24),
        "org": ParagraphStyle("org", parent=base, fontName=bold, fontSize=13, leading=16),
        "head": ParagraphStyle(
            "head", parent=base, fontName=bold, fontSize=14, leading=18, spaceBefore=8
        ),
        "bold": ParagraphStyle("bold", parent=base, fontName=bold),
    }


def _p(text, style, raw: bool = False):
    from reportlab.platypus import Paragraph

    return Paragraph(text if raw else markup(text), style)


def _cell(text, style, width: int = 40):
    """A plain string when the table can draw it directly (fast), else a Paragraph (wraps,
    switches fonts for CJK). Plain strings are never markup, so nothing needs escaping."""
    text = "" if text is None else str(text)
    if len(text) <= width and text.isprintable() and not _CJK.search(text):
        return text
    return _p(text, style)


def _story(doc: Document, st) -> list:
    from reportlab.platypus import Spacer

    story = (
        _header(doc, st) + [Spacer(1, 8)] + [_details(doc, st), Spacer(1, 10), _parties(doc, st)]
    )
    story.append(_p(headline(doc), st["head"]))
    if pay_link(doc):
        story.append(_p(pay_link(doc), st["small"]))
    story += [Spacer(1, 8), _line_table(doc, st), Spacer(1, 6), _totals(doc, st)]
    return story


def _header(doc: Document, st) -> list:
    from reportlab.platypus import Image

    items = []
    if doc.logo_path and Path(doc.logo_path).is_file():
        from reportlab.lib.utils import ImageReader

        try:  # read now: the Image below reads it lazily, when the PDF is built, and failed there
            ImageReader(doc.logo_path).getSize()
            items.append(Image(doc.logo_path, width=120, height=40, kind="proportional"))
        except Exception as exc:  # an unreadable logo never stops the document
            log.warning("logo %s is not an image this can read (%s); left out", doc.logo_path, exc)
    items.append(_p(doc.seller.name, st["org"]))
    items.append(_p("Invoice" if doc.kind == "invoice" else "Receipt", st["title"]))
    return items


def _details(doc: Document, st):
    table = _grid([[k, _cell(v, st["body"], 50)] for k, v in detail_rows(doc)], [110, None], st)
    table.setStyle([("FONT", (0, 0), (0, -1), st["fonts"][1], 9.5)])
    return table


def _party(party: Party | None, title: str | None, st, extra: str | None = None) -> list:
    if party is None:
        return []
    cells = [_p(title, st["bold"])] if title else []
    cells.append(_p(party.name, st["bold"] if not title else st["body"]))
    lines = (
        ([extra] if extra else []) + list(party.address) + ([party.email] if party.email else [])
    )
    if lines:
        cells.append(_p("<br/>".join(markup(line) for line in lines), st["body"], raw=True))
    return cells


def _parties(doc: Document, st):
    seller = _party(doc.seller, None, st, f"For: {doc.seller_for}" if doc.seller_for else None)
    buyer = _party(doc.bill_to, "Bill to", st)
    return _grid([[seller, buyer]], [250, None], st)


def _line_table(doc: Document, st):
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    money = lambda v: format_money(v, doc.currency)  # noqa: E731
    rows = [["Description", "Qty", "Unit price", "Amount"]]
    for line in doc.lines:
        description = _cell(line.description, st["body"])
        if line.period_text:  # the billing period under the description, in the same cell
            description = _p(
                f'{markup(line.description)}<br/><font size="8" color="#555555">'
                f"{markup(line.period_text)}</font>",
                st["body"],
                raw=True,
            )
        rows.append([description, str(line.quantity), money(line.unit_price), money(line.amount)])
    table = Table(rows, colWidths=[260, 50, 80, 85], repeatRows=1)
    body, bold = st["fonts"]
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), body, 9.5),
                ("FONT", (0, 0), (-1, 0), bold, 9.5),
                ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
                ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black),
                ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.lightgrey),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    return table


def _totals(doc: Document, st):
    rows = total_rows(doc)
    table = _grid([["", _cell(k, st["body"]), v] for k, v in rows], [215, 175, 85], st)
    table.setStyle(
        [("ALIGN", (2, 0), (2, -1), "RIGHT")]
        + [
            ("FONT", (1, i), (2, i), st["fonts"][1], 9.5)
            for i, (k, _) in enumerate(rows)
            if k in EMPHASISED
        ]
    )
    return table


def _grid(rows, widths, st):
    from reportlab.platypus import Table, TableStyle

    table = Table(rows, colWidths=widths, hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("FONT", (0, 0), (-1, -1), st["fonts"][0], 9.5),
            ]
        )
    )
    return table


def _page_number(font: str):
    def draw(canvas, document) -> None:
        canvas.saveState()
        canvas.setFont(font, 8)
        canvas.drawRightString(
            document.pagesize[0] - document.rightMargin, 18, f"Page {document.page}"
        )
        canvas.restoreState()

    return draw
