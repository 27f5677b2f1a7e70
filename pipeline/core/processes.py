"""Whether a process that recorded its id (in an MLflow run's tags, in a study's trial) is still alive."""

import os


def process_alive(pid: str | int | None) -> bool:
    """True when a process ``pid`` exists on this host (even one of another user); False for none or garbage."""
    if pid is None or not str(pid).isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
