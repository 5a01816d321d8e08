"""The Streamlit dashboard: thin pages over the store's reads and ``batchrun.analytics``.

    app.py      page config, the database in use, the page router (sidebar)
    data.py     cached reads: one Store per URL, one requests frame per batch selection
    charts.py   Altair charts built from already-aggregated frames (small whatever the store)
    tables.py   frames turned into what people read: dollars, seconds, percentages
    text.py     text from a store shown as typed: never Markdown that loads or links anything
    views/      one module per page, each a ``render(source)`` function

Started by ``batchrun dashboard`` or ``streamlit run dashboard/app.py``.
"""
