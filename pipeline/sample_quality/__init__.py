"""Sample quality: decoder samples against test images in a convolutional classifier's features.

``classifier`` (the network; importing it imports Keras), ``frechet`` (FID), ``manifold`` (precision and
recall), ``scores`` (evaluate's sample metrics).
"""
