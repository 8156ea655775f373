"""Run folders: the one module that names their files (runfiles) and reading / writing them (runs)."""
