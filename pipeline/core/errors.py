"""The pipeline's expected failures: each carries one message a user can act on."""


class PipelineError(Exception):
    """A failure caused by input, data or environment, reported as one clear line, no traceback."""
