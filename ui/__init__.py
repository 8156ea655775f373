"""Streamlit helpers shared by the pages: session state, charts, the live training view.

Only the script thread calls `st.*`; everything computed comes from `transfer_core`.
"""
