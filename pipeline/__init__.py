"""A reproducible VAE pipeline: DVC stages, Keras model, MLflow tracking."""
