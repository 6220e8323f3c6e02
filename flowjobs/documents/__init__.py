"""Invoice and receipt PDFs (spec §11) with reportlab: pure layout (data in, PDF bytes out)
in `layout.py`, the data gathered from the database in `data.py`."""
