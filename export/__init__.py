"""The exports: one script per pipeline (`python export/<pipeline>.py`) that
produces its model files from their source, checks them against the
framework's own output and places them in the repository; `common/` holds
what the scripts share; `python -m export` (make export) runs the scripts
whose outputs are missing or out of date (export/manifest.py)."""
