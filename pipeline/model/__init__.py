"""The VAE in Keras: layers and losses, the compiled trainer, checkpoints, likelihood, loading."""
