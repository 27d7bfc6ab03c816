"""The desktop window (Qt). Nothing outside this package imports Qt; ``run_app`` lives in ``app.main``."""
