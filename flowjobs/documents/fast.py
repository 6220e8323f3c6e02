"""The common case — a one-page invoice or receipt in Latin/Greek/Cyrillic script — drawn
straight on the reportlab canvas, ~2x faster than the platypus layout (layout.py), which
still handles everything else: long invoices that flow over pages, CJK text, logos, and
descriptions too long for two lines. Both draw the same content in the same order."""

from __future__ import annotations

import io

from flowjobs.billing.money import format_money
from flowjobs.documents.document import EMPHASISED, detail_rows, headline, pay_link, total_rows
from flowjobs.documents.text import _CJK, BODY, BOLD, register_fonts

LEFT, RIGHT, TOP, BOTTOM = 51.0, 544.0, 791.0, 60.0
MAX_LINES = 22
ROW, ROW_WITH_PERIOD = 16, 27  # a line's height without / with its billing period under it


def fits(doc) -> bool:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    register_fonts()
    periods = any(line.period for line in doc.lines)
    if doc.logo_path or len(doc.lines) > (
        MAX_LINES * 16 // ROW_WITH_PERIOD if periods else MAX_LINES
    ):
        return False
    texts = [doc.seller.name, doc.seller_for, *(line.description for line in doc.lines)]
    for party in (doc.seller, doc.bill_to):
        if party is not None:
            texts += [party.name, party.email, *party.address]
    if any(t and _CJK.search(str(t)) for t in texts):
        return False
    # the parties' two columns are COLUMN wide and never wrapped here: a longer address or
    # email ran off the page (bill to) or into the other column (seller); the flowing layout
    # wraps them
    parties = [f"For: {doc.seller_for}" if doc.seller_for else ""]
    for party in (doc.seller, doc.bill_to):
        if party is not None:
            parties += [party.name, party.email, *party.address]
    return (
        all(stringWidth(line.description, BODY, 9.5) <= 250 for line in doc.lines)
        and stringWidth(doc.seller.name or "", BOLD, 13) <= RIGHT - LEFT
        and all(stringWidth(t or "", BOLD, 9.5) <= COLUMN for t in parties)
    )


COLUMN = RIGHT - (LEFT + 250)  # a party's column: the bill-to one ends at the right margin


def render_fast(doc) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen.canvas import Canvas

    register_fonts()
    buffer = io.BytesIO()
    c = Canvas(buffer, pagesize=A4, invariant=1, pageCompression=0)
    c.setTitle(f"{doc.kind.title()} {doc.number}")
    c.setAuthor(doc.seller.name)
    c.setFont(BODY, 8)
    c.drawRightString(RIGHT, 18, "Page 1")
    y = TOP
    y = _text(c, doc.seller.name, LEFT, y, BOLD, 13, 16)
    y = _text(c, "Invoice" if doc.kind == "invoice" else "Receipt", LEFT, y - 4, BOLD, 20, 24)
    y -= 12
    for label, value in detail_rows(doc):
        _text(c, label, LEFT, y, BOLD, 9.5, 0)
        y = _text(c, value, LEFT + 110, y, BODY, 9.5, 13)
    y = _parties(c, doc, y - 14)
    y = _text(c, headline(doc), LEFT, y - 12, BOLD, 14, 18)
    if pay_link(doc):
        y = _text(c, pay_link(doc), LEFT, y, BODY, 8.5, 11)
    y = _table(c, doc, y - 10)
    _totals(c, doc, y - 8)
    c.showPage()
    c.save()
    return buffer.getvalue()


def _text(c, text, x, y, font, size, leading, right=False) -> float:
    c.setFont(font, size)
    (c.drawRightString if right else c.drawString)(x, y - size, str(text))
    return y - leading


def _parties(c, doc, y) -> float:
    seller = [(doc.seller.name, BOLD)] + (
        [(f"For: {doc.seller_for}", BODY)] if doc.seller_for else []
    )
    seller += [(line, BODY) for line in doc.seller.address] + (
        [(doc.seller.email, BODY)] if doc.seller.email else []
    )
    buyer = []
    if doc.bill_to is not None:
        buyer = [("Bill to", BOLD), (doc.bill_to.name, BODY)] + [
            (line, BODY) for line in doc.bill_to.address
        ]
        buyer += [(doc.bill_to.email, BODY)] if doc.bill_to.email else []
    low = y
    for column, x in ((seller, LEFT), (buyer, LEFT + 250)):
        row = y
        for text, font in column:
            row = _text(c, text, x, row, font, 9.5, 13)
        low = min(low, row)
    return low


def _table(c, doc, y) -> float:
    money = lambda v: format_money(v, doc.currency)  # noqa: E731
    columns = [(LEFT, False), (LEFT + 310, True), (LEFT + 390, True), (RIGHT, True)]
    rows = [("Description", "Qty", "Unit price", "Amount", BOLD, None)]
    rows += [
        (
            line.description,
            str(line.quantity),
            money(line.unit_price),
            money(line.amount),
            BODY,
            line.period_text,
        )
        for line in doc.lines
    ]
    for i, (*cells, font, period) in enumerate(rows):
        for n, ((x, right), cell) in enumerate(zip(columns, cells)):
            _text(c, cell, x, y, font, 9.5, 0, right)
            if (
                n == 0 and period
            ):  # drawn where the flowing layout puts it: right after the description
                c.setFillGray(0.33)
                _text(c, period, x, y - 12, BODY, 8, 0)
                c.setFillGray(0)
        y -= ROW_WITH_PERIOD if period else ROW
        c.setLineWidth(0.8 if i == 0 else 0.25)
        c.setStrokeGray(0 if i == 0 else 0.8)
        c.line(LEFT, y + 2, RIGHT, y + 2)
    return y


def _totals(c, doc, y) -> None:

    for label, value in total_rows(doc):
        font = BOLD if label in EMPHASISED else BODY
        _text(c, label, LEFT + 215, y, font, 9.5, 0)
        y = _text(c, value, RIGHT, y, font, 9.5, 14, right=True)
