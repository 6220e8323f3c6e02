"""`flowjobs documents render invoice|receipt ID [-o FILE]`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from flowjobs.cli import output
from flowjobs.errors import BadInput

app = typer.Typer(help="Invoice and receipt PDFs.", no_args_is_help=True)


@app.command("render")
def render(
    ctx: typer.Context,
    kind: str = typer.Argument(..., help="invoice or receipt."),
    object_id: str = typer.Argument(
        ..., metavar="ID", help="The invoice id, or the payment id of a receipt."
    ),
    out: Path | None = typer.Option(
        None,
        "-o",
        "--output",
        metavar="FILE",
        help="Write here (default: <kind>-<id>.pdf; '-' for stdout).",
    ),
):
    """Render one invoice or receipt PDF now (nothing is stored or changed)."""
    from flowjobs.documents.service import invoice_pdf, receipt_pdf

    if kind not in ("invoice", "receipt"):
        raise BadInput(f"unknown kind {kind!r}; use invoice or receipt")
    runtime = ctx.obj.runtime(read_only=True)
    billing = runtime.billing
    pdf = (
        invoice_pdf(billing, object_id, runtime.settings.documents.pay_url_template)
        if kind == "invoice"
        else receipt_pdf(billing, object_id)
    )
    if str(out) == "-":
        sys.stdout.buffer.write(pdf)
        return
    target = out or Path(f"{kind}-{object_id}.pdf")
    try:
        target.write_bytes(pdf)
    except OSError as exc:
        raise BadInput(f"cannot write {target}: {exc.strerror}") from None
    output.note(f"wrote {target} ({len(pdf)} bytes)")
