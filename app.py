"""Transfer Studio: teach a pretrained network to sort your own pictures. The entry point: page list."""
from __future__ import annotations

import streamlit as st

PAGES = [
    st.Page("pages/0_Home.py", title="Home", icon="🧠", default=True),
    st.Page("pages/1_Data.py", title="Data", icon="📁", url_path="data"),
    st.Page("pages/2_Train.py", title="Train", icon="🏋️", url_path="train"),
    st.Page("pages/3_Evaluate.py", title="Evaluate", icon="📊", url_path="evaluate"),
    st.Page("pages/4_Predict.py", title="Predict", icon="🔮", url_path="predict"),
    st.Page("pages/5_Runs.py", title="Runs", icon="🗂️", url_path="runs"),
]
st.navigation(PAGES).run()
