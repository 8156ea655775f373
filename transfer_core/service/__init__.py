"""The web app's multi-user side, without Streamlit: the job queue and each person's workspace."""
