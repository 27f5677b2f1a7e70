"""Environment settings that must be in place before TensorFlow is first imported."""

import os


def quiet_tensorflow() -> None:
    """Pick the TensorFlow backend for Keras and silence TensorFlow's C++ start-up chatter."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
