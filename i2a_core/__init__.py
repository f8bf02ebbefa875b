"""i2a: give sound to images (CLIP -> translator -> AudioLDM)."""

__version__ = "0.1.0"
