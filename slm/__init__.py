"""Language models over codec tokens (discrete multi-codebook and continuous latents)."""
