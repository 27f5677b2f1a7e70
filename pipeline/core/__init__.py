"""What every command shares: params, paths, errors, the command line, atomic writes, interrupts."""
