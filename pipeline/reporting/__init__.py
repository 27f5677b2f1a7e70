"""The report's figures and its self-contained HTML page."""
