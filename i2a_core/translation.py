"""What torch-free stages need to know of translators: their error type and their explanation key."""

SOUNDS_LIKE = "sounds_like"  # explain()'s key: [{"caption": str, "weight": float}, ...], best first


class TranslatorError(ValueError):
    """A translator that cannot be used: missing, malformed, or the wrong shape for the encoders."""
