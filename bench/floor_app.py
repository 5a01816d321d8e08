"""The floor under every dashboard page: a bare Streamlit page with one metric and one small
Altair chart, served and timed by bench/dashboard_floor.py the way bench/dashboard_speed.py times
batchrun's pages. Whatever this page takes is Streamlit and the browser, not batchrun."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

st.set_page_config(page_title="floor", layout="wide")
st.title("Floor")
st.metric("Spend", "$537.59")
points = pl.DataFrame({"day": list(range(8)), "USD": [1.0, 3.0, 2.0, 5.0, 4.0, 6.0, 5.5, 7.0]})
st.altair_chart(alt.Chart(points).mark_bar().encode(x="day:O", y="USD:Q"))
