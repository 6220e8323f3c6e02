"""`make dist`'s single file runs flowjobs on a bare Python 3.11 (no virtualenv, no
site-packages): every kind of command, from a fresh unpack folder, on SQLite and PostgreSQL.

Building the file takes about a minute, so `make test` does not: `make dist-check` builds
dist/flowjobs.pyz and runs this file on it (FLOWJOBS_TEST_PYZ=path); without that variable
these tests are skipped.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pypdf
import pytest

from tests.cli_helpers import listening_url
from tests.conftest import make_settings, new_pg_database

BARE = "/usr/bin/python3"
PYZ = os.environ.get("FLOWJOBS_TEST_PYZ")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PYZ, reason="needs a built flowjobs.pyz: `make dist-check`"),
]


@pytest.fixture
def pyz(tmp_path):
    """The built file copied to a folder of its own, run with nothing but the standard library."""
    assert PYZ and Path(PYZ).is_file(), f"FLOWJOBS_TEST_PYZ={PYZ}: no such file"
    assert Path(BARE).exists(), f"{BARE} (a Python 3.11 without flowjobs) is not installed"
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(PYZ, work / "flowjobs.pyz")
    return work


def bare_env(work: Path, **extra: str) -> dict:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(work),  # the unpack folder defaults to $HOME/.cache/flowjobs/pyz
        "FLOWJOBS_DATABASE_URL": f"sqlite:///{work / 'jobs.db'}",
        "FLOWJOBS_DOCUMENTS_DIR": str(work / "documents"),
        "FLOWJOBS_MAIL_DIR": str(work / "mail"),
    }
    env.update(extra)
    return env


def run(work: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # -I: ignore the environment and user site; -S: not even the interpreter's site-packages
    return subprocess.run(
        [BARE, "-I", "-S", "flowjobs.pyz", *args],
        cwd=work,
        env=env or bare_env(work),
        capture_output=True,
        text=True,
        timeout=300,
    )


def unpacked(work: Path) -> Path:
    (build,) = (work / ".cache" / "flowjobs" / "pyz").iterdir()
    return build


def test_help_unpacks_only_flowjobs_and_a_burst_worker_runs_what_was_triggered(pyz):
    helped = run(pyz, "--help")
    assert helped.returncode == 0 and "run-worker" in helped.stdout, helped.stderr
    build = unpacked(pyz)
    assert (build / "lib" / "flowjobs" / "store" / "migrations" / "env.py").is_file()
    assert not (build / "native").exists()  # --help loads no compiled extension

    run_id = run(pyz, "trigger", "noop").stdout.strip()
    assert run_id.startswith("run_")
    hello = run(pyz, "trigger", "hello-world", "--payload", '{"from": "pyz"}').stdout.strip()
    worker = run(pyz, "run-worker", "--burst", "--no-scheduler")
    assert worker.returncode == 0, worker.stderr
    for rid in (run_id, hello):
        shown = run(pyz, "runs", "show", rid, "--json")
        assert json.loads(shown.stdout)["status"] == "completed", shown.stderr
    assert (build / "native" / "pydantic_core").is_dir()
    assert not list(build.parent.glob("**/*.unpacking-*"))  # no scratch folder left behind


def test_the_workers_of_processes_n_start_through_the_pyz_too(pyz):
    ids = [run(pyz, "trigger", "noop").stdout.strip() for _ in range(4)]
    worker = run(pyz, "run-worker", "--processes", "2", "--burst", "--no-scheduler")
    assert worker.returncode == 0, worker.stderr
    listed = json.loads(run(pyz, "runs", "list", "--json").stdout)
    assert {r["id"]: r["status"] for r in listed} == dict.fromkeys(ids, "completed")


def test_an_invoice_pdf_renders_with_the_fonts_and_libraries_inside_the_pyz(pyz, tmp_path):
    from datetime import UTC, datetime

    from flowjobs.billing.models import InvoiceLineItem
    from flowjobs.runtime import Runtime
    from tests.billing_helpers import invoice_for_a_new_customer

    assert run(pyz, "db", "upgrade").returncode == 0
    rt = Runtime(make_settings(f"sqlite:///{pyz / 'jobs.db'}", tmp_path))
    try:
        with rt.billing.unit() as s:
            invoice_for_a_new_customer(
                s,
                "inv_pyz",
                "PYZ-00001",
                currency="EUR",
                invoice_date=datetime(2027, 1, 15, 8, tzinfo=UTC),
                subtotal=990,
                tax_amount=0,
            )
            s.add(
                InvoiceLineItem(
                    id="inv_li_pyz",
                    invoice_id="inv_pyz",
                    quantity=1,
                    description="Widget",
                    price=990,
                )
            )
    finally:
        rt.close()
    out = pyz / "invoice.pdf"
    rendered = run(pyz, "documents", "render", "invoice", "inv_pyz", "-o", str(out))
    assert rendered.returncode == 0, rendered.stderr
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(out.read_bytes())).pages)
    assert "PYZ-00001" in text and "Widget" in text and "€9.90" in text
    assert (unpacked(pyz) / "native" / "pillow").is_dir()  # reportlab imports PIL


def test_serve_answers_health_metrics_and_the_dashboard(pyz):
    assert run(pyz, "db", "upgrade").returncode == 0
    log = pyz / "serve.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            [BARE, "-I", "-S", "flowjobs.pyz", "serve", "--port", "0"],
            cwd=pyz,
            env=bare_env(pyz),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        base = listening_url(log, timeout=60)

        def get(path: str) -> str:
            with urllib.request.urlopen(base + path, timeout=30) as reply:
                assert reply.status == 200
                return reply.read().decode()

        get("/healthz")
        assert "flowjobs_" in get("/metrics")
        assert "<html" in get("/").lower()  # the dashboard's templates, read from files
        assert "/api/overview" in get("/static/live.js")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_postgresql_through_psycopg_binary(pyz, pg_template):
    env = bare_env(pyz, FLOWJOBS_DATABASE_URL=new_pg_database(pg_template))
    run_id = run(pyz, "trigger", "noop", env=env).stdout.strip()
    assert run_id.startswith("run_")
    worker = run(pyz, "run-worker", "--burst", "--no-scheduler", env=env)
    assert worker.returncode == 0, worker.stderr
    shown = run(pyz, "runs", "show", run_id, "--json", env=env)
    assert json.loads(shown.stdout)["status"] == "completed", shown.stderr
    assert (unpacked(pyz) / "native" / "psycopg_binary").is_dir()


def test_two_first_starts_at_once_both_run_and_leave_one_complete_unpack(pyz):
    procs = [
        subprocess.Popen(
            [BARE, "-I", "-S", "flowjobs.pyz", "trigger", "noop"],
            cwd=pyz,
            env=bare_env(pyz, FLOWJOBS_DATABASE_URL=f"sqlite:///{pyz / f'jobs{i}.db'}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out.startswith("run_"), err
    build = unpacked(pyz)
    assert sorted(p.name for p in build.iterdir()) == ["lib", "native"]
    assert not [p for p in (build / "native").iterdir() if ".unpacking-" in p.name]
    assert not [p for p in build.parent.iterdir() if ".unpacking-" in p.name]


def test_an_unwritable_unpack_folder_is_one_error_line_and_exit_2(pyz):
    (pyz / "a-file").write_text("")
    env = bare_env(pyz, FLOWJOBS_PYZ_CACHE=str(pyz / "a-file" / "cache"))
    failed = run(pyz, "--help", env=env)
    assert failed.returncode == 2
    assert failed.stderr.startswith("error: cannot unpack flowjobs.pyz into ")
    assert failed.stderr.count("\n") == 1 and "FLOWJOBS_PYZ_CACHE" in failed.stderr
