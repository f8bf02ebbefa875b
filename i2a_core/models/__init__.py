"""The models: CLIP, AudioLDM (CLAP text tower and i2a's sampler), translators, losses, generated test models."""
