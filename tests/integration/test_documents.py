"""Invoice and receipt PDFs: rendered with reportlab, read back with pypdf, field by field."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pypdf
import pytest

from flowjobs.billing import setup
from flowjobs.billing.models import Invoice, InvoiceLineItem, Payment
from flowjobs.documents.document import Document, Line, Party
from flowjobs.documents.layout import render
from tests.billing_helpers import DECLINING, drain, get, seed, stripe_sections

ISSUED = datetime(2027, 1, 15, 8, tzinfo=UTC)


def text_of(pdf: bytes) -> list[str]:
    """One string per page (pypdf puts one table cell per line)."""
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]


def lines_of(pdf: bytes) -> list[str]:
    return [ln.strip() for page in text_of(pdf) for ln in page.splitlines() if ln.strip()]


def after(lines: list[str], label: str) -> str:
    """The cell after the last cell reading `label` (totals come after the table's headers)."""
    return lines[len(lines) - 1 - lines[::-1].index(label) + 1]


def doc(**fields) -> Document:
    base = dict(
        kind="invoice",
        number="C0FFEE1-00003",
        currency="USD",
        issued=ISSUED,
        seller=Party(
            "Acme Analytics", ["1 Main St", "94110 San Francisco", "US"], "billing@acme.example"
        ),
        lines=[Line("Pro", 2, 2500), Line("Seats", 3, 1000)],
        bill_to=Party("Ada Lovelace", ["2 Side St"], "ada@example.com"),
    )
    base.update(fields)
    return Document(**base)


def test_invoice_with_a_discount_shows_every_field():
    lines = lines_of(
        render(doc(discount=800, discount_code="WELCOME", due=datetime(2027, 2, 14, tzinfo=UTC)))
    )
    assert lines[1:3] == ["Acme Analytics", "Invoice"]
    assert after(lines, "Invoice number") == "C0FFEE1-00003"
    assert after(lines, "Date of issue") == "January 15, 2027"
    assert after(lines, "Date due") == "February 14, 2027"
    assert "Bill to" in lines and "Ada Lovelace" in lines and "ada@example.com" in lines
    assert "$72.00 due February 14, 2027" in lines
    assert lines[lines.index("Description") : lines.index("Description") + 4] == [
        "Description",
        "Qty",
        "Unit price",
        "Amount",
    ]
    assert lines[lines.index("Pro") : lines.index("Pro") + 4] == ["Pro", "2", "$25.00", "$50.00"]
    assert after(lines, "Amount") == "$80.00" and after(lines, "Discount (WELCOME)") == "-$8.00"
    assert after(lines, "Subtotal") == "$72.00" and "Tax" not in lines
    assert after(lines, "Total") == "$72.00" and after(lines, "Amount due") == "$72.00"


def test_invoice_with_tax_and_due_upon_receipt():
    lines = lines_of(render(doc(tax=1600)))
    assert after(lines, "Date due") == "Due upon receipt"
    assert (
        after(lines, "Subtotal") == "$80.00"
        and after(lines, "Tax") == "$16.00"
        and after(lines, "Total") == "$96.00"
    )
    assert (
        lines.count("Amount") == 1
    )  # only the table header: no pre-discount line without a discount


def test_zero_decimal_currency_is_whole_units():
    lines = lines_of(render(doc(currency="JPY", lines=[Line("Pro", 1, 12000)])))
    assert lines[lines.index("Pro") : lines.index("Pro") + 4] == ["Pro", "1", "¥12,000", "¥12,000"]
    assert after(lines, "Total") == "¥12,000" and "¥12,000 due January 15, 2027" in lines


def test_sixty_lines_flow_over_pages_with_the_header_repeated():
    pdf = render(doc(lines=[Line(f"Usage item {i:02d}", 1, 100 + i) for i in range(60)]))
    pages = text_of(pdf)
    assert len(pages) >= 2
    for page in pages[:-1]:
        assert "Description" in page and "Unit price" in page
    found = [ln for ln in lines_of(pdf) if ln.startswith("Usage item")]
    assert found == [f"Usage item {i:02d}" for i in range(60)]
    assert after(lines_of(pdf), "Total") == f"${sum(100 + i for i in range(60)) / 100:,.2f}"


def test_any_unicode_name_renders_and_markup_is_escaped():
    names = Party("Łódź Źródło Sp. z o.o. 株式会社テスト", ["ul. Żółta 1"], "biuro@lodz.example")
    buyer = Party("김철수 <kim@example.com> & Co", [], "kim@example.com")
    lines = lines_of(
        render(doc(seller=names, bill_to=buyer, lines=[Line("Plan <b>Pro</b> & more", 1, 500)]))
    )
    assert "Łódź Źródło Sp. z o.o. 株式会社テスト" in lines and "ul. Żółta 1" in lines
    assert "김철수 <kim@example.com> & Co" in lines
    assert "Plan <b>Pro</b> & more" in lines


def test_a_logo_that_is_not_an_image_is_left_out_and_the_document_still_renders(tmp_path):
    """The logo was only read when the PDF was built, and a file that was not an image failed
    every invoice and receipt of the organisation (and the receipt emails that carry them)."""
    not_an_image = tmp_path / "logo.png"
    not_an_image.write_text("not a PNG at all\n")
    lines = lines_of(render(doc(logo_path=str(not_an_image))))
    assert lines[1:3] == ["Acme Analytics", "Invoice"] and after(lines, "Total") == "$80.00"


def test_rendering_is_deterministic():
    assert render(doc()) == render(doc())


def test_receipt_shows_payment_and_refund():
    lines = lines_of(
        render(
            doc(
                kind="receipt",
                number="pym_123",
                invoice_number="C0FFEE1-00003",
                paid=8000,
                payment_method="Card •••• 4242",
                refunded=3000,
                refunded_at=datetime(2027, 1, 20, tzinfo=UTC),
            )
        )
    )
    assert "Receipt" in lines and after(lines, "Receipt number") == "pym_123"
    assert (
        after(lines, "Date paid") == "January 15, 2027"
        and after(lines, "Payment method") == "Card •••• 4242"
    )
    assert "$80.00 paid on January 15, 2027" in lines
    assert after(lines, "Amount paid") == "$80.00"
    assert after(lines, "Refunded on January 20, 2027") == "-$30.00"
    assert after(lines, "Total refunded without credit note") == "$30.00"


@pytest.fixture
def drt(make_runtime, localstripe_url, tmp_path):
    return make_runtime(
        documents={"dir": str(tmp_path / "docs")}, **stripe_sections(localstripe_url)
    )


def _billed_payment(drt, **seeded) -> Payment:
    """The payment of a subscription (`seed(**seeded)`) whose first billing run the hourly cron
    has run, at localstripe."""
    from sqlmodel import select

    from flowjobs.core.clock import iso

    made = seed(drt, **seeded)
    drt.trigger("hourly-cron", {"timestamp": iso(drt.clock.now_ms()), "scheduleId": "hourly-cron"})
    drain(drt)
    with drt.billing.unit() as s:
        return s.exec(select(Payment).where(Payment.billing_run_id == made.billing_run_id)).one()


def test_billing_run_renders_and_stores_the_invoice_and_receipt(drt, tmp_path):
    payment = _billed_payment(drt, unit_price=4900, discount=(10, "percent"))
    invoice = get(drt, Invoice, payment.invoice_id)
    assert invoice.pdf_url.startswith(
        f"file://{tmp_path}/docs/invoices/{invoice.organization_id}/{invoice.id}/"
    )
    lines = lines_of(drt.documents.read(invoice.pdf_url))
    assert after(lines, "Invoice number") == invoice.invoice_number
    assert after(lines, "Discount (WELCOME)") == "-$4.90" and after(lines, "Total") == "$44.10"

    receipt = drt.trigger("generate-payment-receipt-pdf", {"paymentId": payment.id})
    again = drt.trigger(
        "generate-invoice-pdf", {"invoiceId": invoice.id}
    )  # rendering again is safe
    drain(drt)
    assert (
        drt.store.get_run(receipt.id)["status"]
        == drt.store.get_run(again.id)["status"]
        == "completed"
    )
    payment, invoice2 = get(drt, Payment, payment.id), get(drt, Invoice, invoice.id)
    assert payment.receipt_url == invoice2.receipt_pdf_url
    assert "/receipts/" in payment.receipt_url and payment.receipt_url.split("/")[-1].startswith(
        "receipt_"
    )
    assert "$44.10 paid on January 15, 2027" in lines_of(drt.documents.read(payment.receipt_url))
    assert invoice2.pdf_url != invoice.pdf_url
    stored = list((tmp_path / "docs" / "invoices").rglob("*.pdf"))
    assert len(stored) == 1  # the previous invoice PDF was replaced, not left behind


def test_documents_render_command(drt, tmp_path):
    from tests.cli_helpers import cli_env, flowjobs

    with drt.billing.unit() as s:
        org = setup.organization(s, "Acme")
        cust = setup.customer(s, org, email="a@b.c", name="Ada")
        inv = Invoice(
            id="inv_cli",
            invoice_number="X-00000",
            invoice_date=ISSUED,
            customer_id=cust.id,
            organization_id=org.id,
            currency="EUR",
            type="standalone",
            subtotal=990,
            tax_amount=0,
        )
        s.add(inv)
        s.add(
            InvoiceLineItem(
                id="inv_li_cli", invoice_id=inv.id, quantity=1, description="Widget", price=990
            )
        )
    env = cli_env(drt.db.url)
    out = tmp_path / "x.pdf"
    assert (
        flowjobs("documents", "render", "invoice", "inv_cli", "-o", str(out), env=env).returncode
        == 0
    )
    assert after(lines_of(out.read_bytes()), "Total") == "€9.90"
    missing = flowjobs("documents", "render", "receipt", "pym_nope", env=env)
    assert missing.returncode == 3 and "no payment 'pym_nope'" in missing.stderr
    assert flowjobs("documents", "render", "memo", "x", env=env).returncode == 2


def test_the_fast_one_page_layout_says_exactly_what_the_flowing_layout_says():
    from flowjobs.documents.fast import fits, render_fast
    from flowjobs.documents.layout import render_flowing

    cases = [
        doc(discount=800, discount_code="WELCOME", tax=160),
        doc(
            seller=Party("Łódź Źródło <sp. z o.o.>", ["ul. Żółta 1"], "biuro@lodz.example"),
            bill_to=Party("Zoë <zoe@example.com>", [], None),
            currency="PLN",
        ),
        doc(
            kind="receipt",
            number="pym_1",
            invoice_number="X-1",
            paid=8000,
            payment_method="Card •••• 4242",
        ),
    ]
    for case in cases:
        assert fits(case)
        assert lines_of(render_fast(case)) == lines_of(render_flowing(case))
    assert "Łódź Źródło <sp. z o.o.>" in lines_of(render_fast(cases[1]))
    assert not fits(doc(lines=[Line("x", 1, 1)] * 40)) and not fits(
        doc(bill_to=Party("株式会社", [], None))
    )
    # a party's line wider than its column: it ran off the page (bill to) or into the bill-to
    # column (seller); the flowing layout wraps it
    street = "Unit 4, The Old Brewery Business Park, 1234 Long Industrial Estate Road"
    email = "accounts-payable.department.invoices@very-long-subsidiary-name.example.com"
    for long in (
        doc(bill_to=Party("Ada", [street], None)),
        doc(bill_to=Party("Ada", [], email)),
        doc(
            seller=Party("Acme", ["Building 12, 4567 Enterprise Way, Suite 890, North Zone"], None)
        ),
    ):
        assert not fits(long)
        assert not {"Long", "Industrial", "subsidiary", "Suite"}.isdisjoint(
            " ".join(lines_of(render(long))).replace("-", " ").split()
        )


def test_paid_open_and_partly_paid_documents_read_the_same_in_both_layouts():
    from flowjobs.documents.fast import fits, render_fast
    from flowjobs.documents.layout import render_flowing

    period = (ISSUED, datetime(2027, 2, 15, 8, tzinfo=UTC))
    with_periods = [Line("Pro", 2, 2500, period), Line("Seats", 3, 1000, period)]
    paid = doc(
        lines=with_periods,
        amount_paid=8000,
        paid_on=ISSUED,
        pay_url="https://pay.example/invoices/inv_1",
    )
    open_ = doc(lines=with_periods, amount_paid=3000, pay_url="https://pay.example/invoices/inv_1")
    receipt = doc(
        kind="receipt",
        number="pym_1",
        invoice_number="X-1",
        paid=3000,
        amount_paid=3000,
        payment_method="Visa •••• 4242",
        lines=with_periods,
    )
    for case in (paid, open_, receipt):
        assert fits(case)
        assert lines_of(render_fast(case)) == lines_of(render_flowing(case))
    lines = lines_of(render(paid))
    assert "Paid January 15, 2027" in lines and after(lines, "Date paid") == "January 15, 2027"
    assert [ln for ln in lines if "due" in ln.lower()] == ["Amount due"] and after(
        lines, "Amount due"
    ) == "$0.00"
    assert not [ln for ln in lines if ln.startswith("Pay online")]
    assert lines[lines.index("Pro") : lines.index("Pro") + 5] == [
        "Pro",
        "January 15, 2027 – February 15, 2027",
        "2",
        "$25.00",
        "$50.00",
    ]
    lines = lines_of(render(open_))
    assert (
        "$50.00 due January 15, 2027" in lines
        and "Pay online: https://pay.example/invoices/inv_1" in lines
    )
    assert after(lines, "Amount paid") == "$30.00" and after(lines, "Amount due") == "$50.00"
    lines = lines_of(render(receipt))
    assert after(lines, "Total") == "$80.00" and after(lines, "Amount paid") == "$30.00"
    assert after(lines, "Amount due") == "$50.00"
    many = doc(lines=[Line(f"Item {i}", 1, 100, period) for i in range(30)])
    assert (
        not fits(many) and len(text_of(render(many))) >= 2
    )  # taller rows: flows over pages sooner


def _adas_payment(drt, *, number: str, status: str, line: str, **fields) -> Payment:
    """A $49.00 payment of Ada's at Acme on a standalone invoice of its own, with one line."""
    from tests.billing_helpers import standalone_payment

    with drt.billing.unit() as s:
        org = setup.organization(s, "Acme")
        cust = setup.customer(s, org, email="a@b.c", name="Ada")
    payment = standalone_payment(
        drt,
        customer_id=cust.id,
        organization_id=org.id,
        number=number,
        amount=4900,
        status=status,
        **fields,
    )
    with drt.billing.unit() as s:
        s.add(
            InvoiceLineItem(
                id=f"inv_li_{number}",
                invoice_id=payment.invoice_id,
                quantity=1,
                description=line,
                price=4900,
            )
        )
    return payment


def _declined_payment(drt) -> Payment:
    """A billing run charged a card that declines (localstripe): its payment `failed`."""
    payment = _billed_payment(drt, card=DECLINING, unit_price=4900)
    assert (payment.status, payment.failure_code) == ("failed", "card_declined")
    return payment


def test_a_declined_payment_gets_no_receipt_from_the_command_or_the_task(drt, tmp_path):
    """`documents render receipt` of a declined payment is refused (exit 2, one line naming
    its status), and so is the `generate-payment-receipt-pdf` task: nothing is rendered or
    stored, no `receipt_url` is set."""
    from tests.cli_helpers import cli_env, flowjobs

    payment = _declined_payment(drt)
    why = (
        f"payment {payment.id} is failed (card_declined): a receipt is only made for a "
        "succeeded (or refunded) payment"
    )
    out = tmp_path / "failed-receipt.pdf"
    refused = flowjobs(
        "documents", "render", "receipt", payment.id, "-o", str(out), env=cli_env(drt.db.url)
    )
    assert (refused.returncode, refused.stderr.strip()) == (2, f"error: {why}")
    assert not out.exists()

    run = drt.trigger("generate-payment-receipt-pdf", {"paymentId": payment.id})
    drain(drt)
    done = drt.store.get_run(run.id)
    assert (done["status"], done["attempt"], done["error"]) == (
        "failed",
        1,
        f"AbortTaskRunError: {why}",
    )
    assert get(drt, Payment, payment.id).receipt_url is None
    assert get(drt, Invoice, payment.invoice_id).receipt_pdf_url is None
    assert not list((tmp_path / "docs").rglob("receipt_*.pdf"))


def test_a_refunded_payment_keeps_its_receipt(drt, tmp_path):
    """A refunded payment did take the money (spec §3: `refunded` is settled, §11: its receipt
    says when it was refunded): its receipt is still made."""
    from tests.cli_helpers import cli_env, flowjobs

    payment = _adas_payment(
        drt,
        number="X-00001",
        status="refunded",
        line="Widget",
        refunded=True,
        refunded_amount=4900,
        refunded_at=datetime(2027, 1, 20, tzinfo=UTC),
    )
    out = tmp_path / "refunded.pdf"
    made = flowjobs(
        "documents", "render", "receipt", payment.id, "-o", str(out), env=cli_env(drt.db.url)
    )
    assert made.returncode == 0, made.stderr
    lines = lines_of(out.read_bytes())
    assert after(lines, "Receipt number") == payment.id
    assert after(lines, "Refunded on January 20, 2027") == "-$49.00"


def test_an_invoice_paid_after_a_declined_attempt_gets_the_receipt_of_the_payment_that_paid_it(
    drt,
):
    """`invoices:UPDATE` into `paid` asks for the receipt of the invoice's first settled
    payment, not of a declined attempt made before it (which would get no receipt at all)."""
    from flowjobs.webhooks.supabase_handlers import invoice_updated
    from tests.integration.test_handlers_e2e import invoice_update

    declined = _adas_payment(
        drt,
        number="X-00002",
        status="failed",
        line="Pro",
        failure_code="card_declined",
        created_at=ISSUED,
    )
    with drt.billing.unit() as s:
        invoice = s.get(Invoice, declined.invoice_id)
        invoice.status = "paid"
        paid = Payment(
            id="pym_paid",
            invoice_id=invoice.id,
            amount=4900,
            payment_method="card",
            currency="USD",
            status="succeeded",
            charge_date=datetime(2027, 1, 18, tzinfo=UTC),
            organization_id=declined.organization_id,
            customer_id=declined.customer_id,
            created_at=datetime(2027, 1, 18, tzinfo=UTC),
        )
        s.add(paid)
    result = invoice_updated(drt.billing, invoice_update(invoice.id, "open", "paid"))
    assert result == {
        "result": "receipt requested",
        "invoiceId": invoice.id,
        "paymentId": "pym_paid",
    }
    drain(drt)
    [run] = drt.store.list_runs(task="generate-payment-receipt-pdf")
    assert run["status"] == "completed"
    assert get(drt, Payment, declined.id).receipt_url is None
    receipt = get(drt, Payment, "pym_paid").receipt_url
    assert "$49.00 paid on January 18, 2027" in lines_of(drt.documents.read(receipt))
