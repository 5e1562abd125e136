"""The report: figures (figures.py), the short answer (answer.py), the headline table (table.py), the HTML (html.py)."""
