"""The datasets: pinned IDX files, the sources they come from, their format, and the prepared splits."""
