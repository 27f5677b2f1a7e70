"""The regression gate: metrics compared with a baseline under tolerances."""
