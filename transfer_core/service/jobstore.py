"""The queue on disk (a small SQLite file), so an app restart loses no job: waiting jobs are queued
again in their order, and running ones are re-attached where their executor still runs them.

What is stored is data only (the settings, whose job it is, where its run goes). A job's extra callbacks
are not: a restored job gets the owner tag every queued job gets (JobQueue adds it), nothing else."""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path

from transfer_core.core.config import TrainConfig
from transfer_core.service.work import Job

log = logging.getLogger(__name__)

SCHEMA = """CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, runs_dir TEXT NOT NULL, owner TEXT NOT NULL, config TEXT NOT NULL,
    resume INTEGER NOT NULL, submitted REAL NOT NULL, state TEXT NOT NULL)"""


class JobStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def put(self, job: Job) -> None:
        with self._lock, self._connect() as db:
            db.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (job.id, str(job.runs_dir), job.owner, json.dumps(job.config.to_dict()),
                        int(job.resume), job.submitted, job.state))

    def set_state(self, job_id: str, state: str) -> None:
        """Over (done or cancelled) leaves the file: the run folder is the record from then on."""
        with self._lock, self._connect() as db:
            if state in ("done", "cancelled"):
                db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            else:
                db.execute("UPDATE jobs SET state = ? WHERE id = ?", (state, job_id))

    def unfinished(self) -> list[Job]:
        """The stored jobs, oldest first, with the state they had (queued or running)."""
        with self._lock, self._connect() as db:
            rows = db.execute("SELECT id, runs_dir, owner, config, resume, submitted, state "
                              "FROM jobs ORDER BY submitted").fetchall()
        jobs = []
        for job_id, runs_dir, owner, config, resume, submitted, state in rows:
            try:
                jobs.append(Job(id=job_id, config=TrainConfig.from_dict(json.loads(config)), runs_dir=Path(runs_dir),
                                owner=owner, submitted=submitted, state=state, resume=bool(resume)))
            except Exception as exc:  # noqa: BLE001 - a row from an older version: drop it, keep the others
                log.warning("A stored job (%s) could not be read and is dropped: %s", job_id, exc)
                self.set_state(job_id, "done")
        return jobs
