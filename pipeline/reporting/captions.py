"""The sentence under each figure of the report, by file name, for each kind and shape of latent space."""

CAPTIONS = {
    "manifold.png": "The decoder's mean image at each point of a regular latent grid over the range that "
                    "report.manifold_range picks: where the test codes lie, or the fixed report.grid_range.",
    "latent_scatter.png": "Where the encoder puts each test image (z_mean), coloured by its label.",
    "reconstructions.png": "Test images and the decoder mean at their z_mean.",
    "samples.png": "Decoder means for random latent points drawn from the prior.",
    "learning_curves.png": "Per-epoch losses from the train stage; training values are means over each epoch.",
    "per_class.png": "Test −ELBO of each class (nats per image, lower is better), from reports/per_class.csv.",
}
CAPTIONS_1D = {  # a 1-D latent space has no plane to grid or scatter: report.grid_dims is not used
    **CAPTIONS,
    "manifold.png": "The decoder's mean image at evenly spaced points along the one latent dimension z₁.",
    "latent_scatter.png": "How the encoder spreads the test images (z_mean) along z₁, stacked by label.",
}

CONDITIONAL_CAPTIONS = {
    **CAPTIONS,
    "manifold.png": "The conditional decoder's mean image over one regular latent grid, once per label: "
                    "z carries the style, the label the class.",
    "latent_scatter.png": "Where the conditional encoder puts each test image (z_mean), coloured by its label; "
                          "the encoder is given the label, so z need not separate the classes and they mix.",
    "reconstructions.png": "Same style, every class: each test image's z_mean decoded under every label; "
                           "the row of its own label is its reconstruction.",
    "samples.png": "Latent points drawn from the prior N(0, I), each decoded under every label.",
}


def captions(latent_dim: int, conditional: bool = False) -> dict[str, str]:
    """The sentence under each figure, for a model of ``latent_dim`` latent dimensions, conditional or not."""
    if conditional:
        return CONDITIONAL_CAPTIONS
    return CAPTIONS_1D if latent_dim == 1 else CAPTIONS
