"""Bytes in and out: storage (local and object stores), images, URLs, listings, the manifest, the gallery, the lease."""
