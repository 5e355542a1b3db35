"""usdiff: simulated-to-real ultrasound translation with Diffusion Autoencoders."""
__version__ = "0.1.0"
