"""Ray and img2dataset pipelines: fetch and embed, each a chain of reader, mapper and writer stages."""
